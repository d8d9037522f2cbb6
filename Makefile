# libmedgemini - GNU make build. `make`, `make check`, `make check-asan`,
# `make check-valgrind`, `make install PREFIX=...`, `make bench`.
# Out-of-tree object directory: `make BUILD=/tmp/b BINDIR=/tmp/b/bin`.

VERSION_MAJOR := $(shell sed -n 's/^\#define MG_VERSION_MAJOR \([0-9]*\)/\1/p' include/medgemini.h)
VERSION_MINOR := $(shell sed -n 's/^\#define MG_VERSION_MINOR \([0-9]*\)/\1/p' include/medgemini.h)
VERSION_PATCH := $(shell sed -n 's/^\#define MG_VERSION_PATCH \([0-9]*\)/\1/p' include/medgemini.h)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

CC      ?= cc
BUILD   ?= lib
BINDIR  ?= bin
PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include

PKG_CONFIG ?= pkg-config
DEPS_PC := openblas libpng libjpeg libzstd libcjson zlib htslib libopenjp2 charls
DEPS_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(DEPS_PC))
DEPS_LIBS   := $(shell $(PKG_CONFIG) --libs $(DEPS_PC)) -lm -pthread

# Warnings are errors in development and CI builds (WERROR=1, the default in
# a git checkout) and only warnings elsewhere (a release tarball, another
# compiler's new warnings): `make WERROR=0` or `make WERROR=1` to choose.
WERROR  ?= $(if $(wildcard .git),1,0)
OPT     ?= -O2 -g
WARN    := -Wall -Wextra $(if $(filter 1,$(WERROR)),-Werror) -Wshadow -Wstrict-prototypes \
           -Wno-unused-parameter

# SIMD kernels: chosen at run time, so only these files get ISA flags. They
# are x86-64 only: elsewhere (aarch64) the scalar kernels run. The AVX-512
# files (and the AMX one) are built where the compiler has those flags;
# MG_NO_AVX512 / MG_NO_AMX tell the sources when it has not.
TARGET_MACHINE := $(shell $(CC) -dumpmachine)
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 \
                -mavx512vnni -mfma -mf16c
VBMI_FLAGS   := $(AVX512_FLAGS) -mavx512vbmi
AMX_FLAGS    := $(VBMI_FLAGS) -mamx-tile -mamx-int8
cc_has = $(shell $(CC) $(1) -x c -c /dev/null -o /dev/null 2>/dev/null && echo 1)
ifneq ($(filter x86_64-%,$(TARGET_MACHINE)),)
  SIMD_X86    := 1
  SIMD_AVX512 := $(call cc_has,$(VBMI_FLAGS))
  SIMD_AMX    := $(if $(SIMD_AVX512),$(call cc_has,$(AMX_FLAGS)))
endif
SIMD_SKIP := $(if $(SIMD_X86),,%_avx2.c) $(if $(SIMD_AVX512),,%_avx512.c %_vbmi.c) \
             $(if $(SIMD_AMX),,%_amx.c)
SIMD_DEFS := $(if $(SIMD_X86),$(if $(SIMD_AVX512),,-DMG_NO_AVX512) $(if $(SIMD_AMX),,-DMG_NO_AMX))

CFLAGS_ALL := -std=c11 $(OPT) $(WARN) -fPIC -fvisibility=hidden \
              -D_GNU_SOURCE -DMG_BUILDING_LIBRARY $(SIMD_DEFS) -Iinclude -Isrc \
              $(DEPS_CFLAGS) $(SANITIZE) $(EXTRA_CFLAGS)
LDFLAGS_ALL := $(SANITIZE) $(EXTRA_LDFLAGS)

LIB_SRC  := $(sort $(wildcard src/*/*.c))
LIB_SRC  := $(filter-out src/cli/% $(SIMD_SKIP),$(LIB_SRC))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
OBJDIR   := $(BUILD)/obj
LIB_OBJ  := $(patsubst src/%.c,$(OBJDIR)/%.o,$(LIB_SRC))
CLI_OBJ  := $(patsubst src/%.c,$(OBJDIR)/%.o,$(CLI_SRC))

STATIC   := $(BUILD)/libmedgemini.a
SONAME   := libmedgemini.so.$(VERSION_MAJOR)
SHARED   := $(BUILD)/libmedgemini.so.$(VERSION)
CLI      := $(BINDIR)/medgemini

TEST_SRC := $(sort $(wildcard tests/check_*.c))
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_SUPPORT := $(filter-out tests/check_%,$(wildcard tests/*.c))
CHECK_LIBS := $(shell $(PKG_CONFIG) --libs check)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all clean check check-asan check-valgrind install uninstall fuzz fuzz-run \
        fuzz-replay fuzz-replay-run fuzz-coverage fuzz-coverage-run \
        test-install bench demo test check-reference bindings-test train-demo check-faults \
        abi-check abi-dump check-tsan check-simd check-aarch64 \
        eval-demo eval-polygenic train-polygenic bench-peer bench-build
all: $(STATIC) $(SHARED) $(CLI)

$(OBJDIR)/%_avx2.o: src/%_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(AVX2_FLAGS) -MMD -MP -c $< -o $@
$(OBJDIR)/%_avx512.o: src/%_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(AVX512_FLAGS) -MMD -MP -c $< -o $@
$(OBJDIR)/%_vbmi.o: src/%_vbmi.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(VBMI_FLAGS) -MMD -MP -c $< -o $@
$(OBJDIR)/%_amx.o: src/%_amx.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(AMX_FLAGS) -MMD -MP -c $< -o $@
$(OBJDIR)/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(SHARED): $(LIB_OBJ) src/libmedgemini.vers
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/libmedgemini.vers \
	  -Wl,--no-undefined -Wl,-z,relro,-z,now -o $@ $(LIB_OBJ) $(LDFLAGS_ALL) $(DEPS_LIBS)
	ln -sf libmedgemini.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libmedgemini.so

$(CLI): $(CLI_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $(CLI_OBJ) $(STATIC) $(LDFLAGS_ALL) $(DEPS_LIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT) tests/testutil.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-unused-function -Itests -o $@ $< $(TEST_SUPPORT) $(STATIC) \
	  $(LDFLAGS_ALL) $(CHECK_LIBS) $(DEPS_LIBS)

$(BUILD)/bench/%: bench/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -O3 -o $@ $< $(STATIC) $(LDFLAGS_ALL) $(DEPS_LIBS)

# Tests run from the repository root; each writes scratch files under
# $(BUILD)/tmp. MG_SHARED_DATA points at the shared data tree when present.
TEST_ENV := MG_TEST_TMP=$(abspath $(BUILD))/tmp MG_CLI=$(abspath $(CLI)) \
            OPENBLAS_NUM_THREADS=1
check: $(TEST_BIN) $(CLI)
	@mkdir -p $(BUILD)/tmp
	@fail=0; for t in $(filter-out $(addprefix $(BUILD)/tests/,$(CHECK_SKIP)),$(TEST_BIN)); do \
	  echo "== $$t"; $(TEST_ENV) $(TEST_RUNNER) $$t || fail=1; \
	done; \
	$(TEST_ENV) MG_RUNNER="$(TEST_RUNNER)" sh tests/cli_test.sh $(abspath $(CLI)) || fail=1; \
	if [ -z "$(SANITIZE)$(TEST_RUNNER)" ]; then sh tests/install_test.sh || fail=1; \
	  $(TEST_ENV) MG_LIB=$(abspath $(SHARED)) sh tests/demo_test.sh $(abspath $(CLI)) || fail=1; \
	  $(TEST_ENV) MG_LIB=$(abspath $(SHARED)) sh tools/polygenic/model_test.sh $(abspath $(CLI)) || fail=1; fi; \
	exit $$fail

# Regenerates the decoder's golden fixtures with PyTorch into a scratch
# directory, compares them with the committed tests/reference/fixtures
# (weights bitwise, logits within 1e-5 relative, continuations exactly) and
# runs check_reference on the fresh ones. Skipped without torch.
REF_PY ?= /usr/bin/python3
check-reference: $(BUILD)/tests/check_reference $(CLI)
	@if ! $(REF_PY) -c 'import torch, numpy' >/dev/null 2>&1; then \
	  echo "check-reference: skipped ($(REF_PY) with torch and numpy not available)"; exit 0; fi; \
	rm -rf $(BUILD)/tmp/reference && mkdir -p $(BUILD)/tmp/reference && \
	$(REF_PY) tests/reference/gemma3_reference.py --out $(BUILD)/tmp/reference \
	  --compare tests/reference/fixtures && \
	$(TEST_ENV) MG_REFERENCE_FIXTURES=$(abspath $(BUILD))/tmp/reference \
	  $(TEST_RUNNER) $(BUILD)/tests/check_reference

check-asan:
	$(MAKE) BUILD=lib/asan BINDIR=lib/asan/bin OPT="-O1 -g -fno-omit-frame-pointer" \
	  SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  TEST_RUNNER="env ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1" check

# Valgrind runs every suite but the two whose time goes to arithmetic on
# large arrays (about 6 and 4 of its 23 minutes on 2 cores): check_kernels
# and check_volume3d. Both still run plainly and under ASan+UBSan (and
# check_kernels tests each SIMD level itself); VG_SKIP= runs them under
# valgrind too.
VG_SKIP ?= check_kernels check_volume3d
check-valgrind:
	$(MAKE) BUILD=lib/vg BINDIR=lib/vg/bin OPT="-O1 -g" CHECK_SKIP="$(VG_SKIP)" \
	  TEST_RUNNER="env CK_FORK=no CK_DEFAULT_TIMEOUT=600 MG_VALGRIND=1 valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect" \
	  check

# The language bindings against the in-tree library: the drift check (every
# exported function declared by every binding, with the header's arity),
# then each binding's own tests (bindings/<lang>/run_tests.sh).
BINDINGS := python go rust
bindings-test: $(SHARED) $(CLI)
	/usr/bin/python3 bindings/check_drift.py --lib $(SHARED) --require $(shell for b in $(BINDINGS); do [ -d bindings/$$b ] && printf '%s,' $$b; done | sed 's/,$$//')
	/usr/bin/python3 -m unittest discover -s bindings/tests
	@fail=0; for b in $(BINDINGS); do \
	  if [ -x bindings/$$b/run_tests.sh ]; then echo "== bindings/$$b"; \
	    MG_LIB=$(abspath $(BUILD))/$(SONAME) MG_LIB_DIR=$(abspath $(BUILD)) MG_CLI=$(abspath $(CLI)) \
	    LD_LIBRARY_PATH=$(abspath $(BUILD)) bindings/$$b/run_tests.sh || fail=1; fi; \
	done; exit $$fail

# Fuzzing (tests/fuzz/README.md). fuzz-replay: every harness linked with
# tests/fuzz/replay.c and run over its committed corpus and saved crash
# reproducers under ASan+UBSan (gcc; part of `make test`). fuzz: the same
# harnesses with libFuzzer (clang), FUZZ_TIME seconds each, growing
# lib/fuzz/corpus/<name> from the committed seeds; new crashes land in
# lib/fuzz/crashes/<name>.
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_HDR   := tests/fuzz/fuzz.h tests/fuzz/prs_fixture.h
FUZZ_TIME  ?= 60
FUZZ_CC    ?= clang
ASAN_ENV   := ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1

$(BUILD)/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(FUZZ_HDR) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/fuzz -o $@ $< tests/fuzz/replay.c $(STATIC) $(LDFLAGS_ALL) $(DEPS_LIBS)

fuzz-replay-run: $(patsubst %,$(BUILD)/fuzz/replay_%,$(FUZZ_NAMES))
	@fail=0; for n in $(FUZZ_NAMES); do \
	  set --; for d in tests/fuzz/corpus/$$n tests/fuzz/crashes/$$n; do [ -d $$d ] && set -- "$$@" $$d; done; \
	  env $(ASAN_ENV) $(BUILD)/fuzz/replay_$$n "$$@" || { echo "FAIL: fuzz replay $$n"; fail=1; }; \
	done; exit $$fail

fuzz-replay:
	$(MAKE) BUILD=lib/asan BINDIR=lib/asan/bin OPT="-O1 -g -fno-omit-frame-pointer" \
	  SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=all" fuzz-replay-run

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_HDR) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer -Itests/fuzz -o $@ $< $(STATIC) $(LDFLAGS_ALL) $(DEPS_LIBS)

fuzz-run: $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_NAMES))
	@for n in $(FUZZ_NAMES); do \
	  mkdir -p $(BUILD)/corpus/$$n $(BUILD)/crashes/$$n; \
	  echo "== fuzz $$n ($(FUZZ_TIME) s)"; \
	  env $(ASAN_ENV) $(BUILD)/fuzz/fuzz_$$n -max_total_time=$(FUZZ_TIME) -rss_limit_mb=3072 \
	    -timeout=20 -print_final_stats=1 -artifact_prefix=$(BUILD)/crashes/$$n/ \
	    $(BUILD)/corpus/$$n tests/fuzz/corpus/$$n 2>&1 | \
	    grep -E "^(stat::|#[0-9]+ +DONE|==[0-9]+==ERROR|SUMMARY|artifact_prefix)" || true; \
	done

fuzz:
	$(MAKE) CC=$(FUZZ_CC) BUILD=lib/fuzz BINDIR=lib/fuzz/bin WARN="-Wall -Wextra -Wno-unused-parameter" \
	  OPT="-O1 -g -fno-omit-frame-pointer" \
	  SANITIZE="-fsanitize=address,undefined -fsanitize=fuzzer-no-link" fuzz-run

# Line coverage of the library's parsers by the corpora (committed seeds plus
# what `make fuzz` grew in lib/fuzz/corpus): the replay harnesses built with
# clang's source-based coverage, one summary per harness from llvm-cov.
fuzz-coverage-run: $(patsubst %,$(BUILD)/fuzz/replay_%,$(FUZZ_NAMES))
	@for n in $(FUZZ_NAMES); do \
	  set --; for d in tests/fuzz/corpus/$$n lib/fuzz/corpus/$$n; do [ -d $$d ] && set -- "$$@" $$d; done; \
	  LLVM_PROFILE_FILE=$(BUILD)/fuzz/$$n.profraw $(BUILD)/fuzz/replay_$$n "$$@" 2>/dev/null; \
	  llvm-profdata merge -sparse $(BUILD)/fuzz/$$n.profraw -o $(BUILD)/fuzz/$$n.profdata; \
	  case $$n in mgm) f='io/mgm|llm/decoder|llm/tokenizer\.c|encoders/';; \
	    image) f='io/image|io/dicom|io/jpeg_lossless';; nifti) f='io/nifti|io/volume';; \
	    plink) f='prs/plink|prs/score\.c';; score) f='prs/scorefile';; \
	    tokenizer) f='llm/tokenizer';; vcf) f='prs/vcf';; *) f='src/';; esac; \
	  echo "== $$n (file, regions, missed, cover, functions, missed, cover, lines, missed, cover)"; \
	  llvm-cov report $(BUILD)/fuzz/replay_$$n -instr-profile=$(BUILD)/fuzz/$$n.profdata | \
	    grep -E "$$f" | awk '{print $$1, $$2, $$3, $$4, $$5, $$6, $$7, $$8, $$9, $$10}'; \
	done

fuzz-coverage:
	$(MAKE) CC=$(FUZZ_CC) BUILD=lib/fuzzcov BINDIR=lib/fuzzcov/bin WARN="-Wall -Wextra -Wno-unused-parameter" \
	  OPT="-O1 -g" SANITIZE="-fprofile-instr-generate -fcoverage-mapping" fuzz-coverage-run

# Allocation failures (tests/faults/check_faults.c): the library built with
# MG_FAULT_INJECTION under ASan+UBSan fails its k-th allocation, for every k,
# in each scenario (load, images, report, VQA and chat, volume, convert,
# polygenic scores and prediction); each run must end in MG_OK or
# MG_E_NOMEM with a message, without a leak or crash.
FAULTS_ENV := MG_TEST_TMP=$(abspath lib/faults)/tmp MG_CLI=$(abspath lib/faults/bin/medgemini) \
              OPENBLAS_NUM_THREADS=1 CK_FORK=no ASAN_OPTIONS=detect_leaks=1
check-faults:
	$(MAKE) BUILD=lib/faults BINDIR=lib/faults/bin \
	  OPT="-O1 -g -fno-omit-frame-pointer -DMG_FAULT_INJECTION" \
	  SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  lib/faults/tests/faults/check_faults lib/faults/bin/medgemini
	@mkdir -p lib/faults/tmp
	$(FAULTS_ENV) lib/faults/tests/faults/check_faults

# ThreadSanitizer (gcc): the library and the suites that exercise threads
# (a model shared by threads, interrupts from other threads, the pool,
# polygenic handles; tests/check_threads.c) built with -fsanitize=thread.
# OpenBLAS runs single-threaded here: its own threads synchronize in ways
# the detector cannot see. The vision suite's "encoder" case is left out
# for that reason (it sets OpenBLAS's thread count).
TSAN_ENV := MG_TEST_TMP=$(abspath lib/tsan)/tmp MG_CLI=$(abspath lib/tsan/bin/medgemini) \
            OPENBLAS_NUM_THREADS=1 CK_FORK=no TSAN_OPTIONS=halt_on_error=1
check-tsan:
	$(MAKE) BUILD=lib/tsan BINDIR=lib/tsan/bin OPT="-O1 -g" SANITIZE="-fsanitize=thread" \
	  lib/tsan/tests/check_threads lib/tsan/tests/check_api lib/tsan/tests/check_generate \
	  lib/tsan/tests/check_batch lib/tsan/tests/check_prs lib/tsan/tests/check_vision \
	  lib/tsan/bin/medgemini
	@mkdir -p lib/tsan/tmp
	@fail=0; for t in check_threads check_api check_generate check_batch check_prs; do \
	  echo "== lib/tsan/tests/$$t"; $(TSAN_ENV) lib/tsan/tests/$$t || fail=1; done; \
	for c in threads reuse report misuse; do \
	  echo "== lib/tsan/tests/check_vision ($$c)"; \
	  $(TSAN_ENV) CK_RUN_CASE=$$c lib/tsan/tests/check_vision || fail=1; done; exit $$fail

# The ABI against the committed baseline abi/libmedgemini.abi (abigail-tools;
# tools/abi_check.py: an incompatible change fails unless CHANGELOG.md's
# [Unreleased] ABI notes name it). abi-dump refreshes the baseline.
ABIDW := abidw --headers-dir include --drop-private-types --no-show-locs --no-corpus-path
abi-check: $(SHARED)
	@mkdir -p $(BUILD)/abi
	$(ABIDW) $(SHARED) | sed "s/ comp-dir-path='[^']*'//" > $(BUILD)/abi/current.abi
	/usr/bin/python3 tools/abi_check.py abi/libmedgemini.abi $(BUILD)/abi/current.abi CHANGELOG.md
abi-dump: $(SHARED)
	$(ABIDW) $(SHARED) | sed "s/ comp-dir-path='[^']*'//" > abi/libmedgemini.abi

# The lower x86-64 SIMD levels: the suites whose results go through the
# kernels chosen at run time (the decoder and generation, the image
# encoder's products and reports, polygenic scores) once per level with
# MG_SIMD capping it, so that the AVX2 and scalar paths of whole models stay
# tested on an AVX-512 machine; check_core checks that the cap took. Not
# check_kernels: it runs every kernel at every level the CPU has whatever
# MG_SIMD says. SUITE:CASE runs one Check case (CK_RUN_CASE). About 4 min
# on 2 cores.
SIMD_SUITES ?= check_core check_decoder check_generate check_prs check_vision:encoder \
               check_vision:report
SIMD_LEVELS ?= avx2 scalar
check-simd: $(sort $(foreach s,$(SIMD_SUITES),$(BUILD)/tests/$(firstword $(subst :, ,$(s))))) $(CLI)
	@mkdir -p $(BUILD)/tmp
	@fail=0; for l in $(SIMD_LEVELS); do for s in $(SIMD_SUITES); do \
	  t=$${s%%:*}; c=; [ "$$t" = "$$s" ] || c=$${s#*:}; \
	  echo "== MG_SIMD=$$l $(BUILD)/tests/$$t $${c:+(case $$c)}"; \
	  env $${c:+CK_RUN_CASE=$$c} MG_SIMD=$$l $(TEST_ENV) $(BUILD)/tests/$$t || fail=1; \
	done; done; exit $$fail

# aarch64 Linux: the library, the tool and the unit suites cross-built with
# Debian's aarch64-linux-gnu-gcc against the arm64 (multiarch) packages into
# lib/aarch64, and run under qemu-user (the tool too, for the models the
# suites write) with Check's timeouts lengthened: AARCH64_SUITES with their
# loops shortened as under valgrind (MG_EMULATED=1), AARCH64_FULL (the
# decoder's and the image encoder's comparisons with the PyTorch
# references, which the short mode leaves out) in full. SUITE:CASE runs one
# Check case. Skipped where the cross compiler or qemu is missing;
# .ci/deps installs them. About 5 min on 2 cores.
AARCH64_CC     ?= aarch64-linux-gnu-gcc
AARCH64_PKGCFG ?= env PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig pkg-config
QEMU_AARCH64   ?= qemu-aarch64
AARCH64_SUITES ?= check_core check_container check_api check_image check_dicom check_tokenizer \
                  check_kernels check_generate check_prs check_volume check_polygenic \
                  check_convert check_threads check_vision:preprocess check_vision:misuse \
                  check_vision:reuse check_vision:threads
AARCH64_FULL   ?= check_decoder check_vision:encoder check_vision:report
A64 := lib/aarch64
A64_ENV := MG_TEST_TMP=$(abspath $(A64))/tmp MG_CLI="$(QEMU_AARCH64) $(abspath $(A64))/bin/medgemini" \
           OPENBLAS_NUM_THREADS=1 CK_TIMEOUT_MULTIPLIER=4
A64_TESTS := $(sort $(foreach s,$(AARCH64_SUITES) $(AARCH64_FULL),$(A64)/tests/$(firstword $(subst :, ,$(s)))))
check-aarch64:
	@if ! command -v $(AARCH64_CC) >/dev/null 2>&1 || ! command -v $(QEMU_AARCH64) >/dev/null 2>&1; then \
	  echo "check-aarch64: skipped ($(AARCH64_CC) or $(QEMU_AARCH64) not installed)"; exit 0; fi; \
	$(MAKE) CC=$(AARCH64_CC) PKG_CONFIG="$(AARCH64_PKGCFG)" BUILD=$(A64) BINDIR=$(A64)/bin \
	  $(A64)/libmedgemini.a $(A64)/bin/medgemini $(A64_TESTS) || exit 1; \
	mkdir -p $(A64)/tmp; \
	fail=0; short=1; for s in $(AARCH64_SUITES) full $(AARCH64_FULL); do \
	  if [ "$$s" = full ]; then short=; continue; fi; \
	  t=$${s%%:*}; c=; [ "$$t" = "$$s" ] || c=$${s#*:}; \
	  echo "== aarch64 (qemu) $(A64)/tests/$$t $${c:+(case $$c)}$${short:+ (short)}"; \
	  env $${c:+CK_RUN_CASE=$$c} $${short:+MG_EMULATED=1} $(A64_ENV) \
	    $(QEMU_AARCH64) $(A64)/tests/$$t || fail=1; \
	done; exit $$fail

# Everything CI runs: the plain suite (with the install test), the lower
# SIMD levels and aarch64 under qemu, then the same suites under
# ASan+UBSan (and the allocation failures) and under valgrind, then the
# bindings, then the ABI check.
test:
	$(MAKE) abi-check
	$(MAKE) check
	$(MAKE) check-simd
	$(MAKE) check-aarch64
	$(MAKE) check-asan
	$(MAKE) check-faults
	$(MAKE) check-tsan
	$(MAKE) fuzz-replay
	$(MAKE) check-valgrind
	$(MAKE) bindings-test

# The main job: the shipped demo model (examples/models/MODEL_CARD.md), a
# small MedGemma-architecture model trained on VQA-RAD, summarizes and
# answers questions about real images: a VQA-RAD chest X-ray, the NIH chest
# X-ray PNG and, with the shared data tree present, a CR chest radiograph in
# DICOM. Every step (decoding, preprocessing, the image encoder, projector
# and Gemma 3 decoder, greedy decoding) is the library's.
DEMO_MODEL ?= examples/models/medgemini-demo-q8_0.mgm
DEMO_BLIND ?= examples/models/medgemini-demo-blind-q4_0.mgm
DEMO_DICOM ?= ../shared/data/dicom/cr_chest/RG1_J2KI.dcm
DEMO_Q := -q "What kind of image is this?" -q "Which plane is this image taken?" \
          -q "Is there a pneumothorax?" -q "Is the heart enlarged?" -q "Are the lungs normal?"
demo: $(CLI)
	@$(CLI) info --verify $(DEMO_MODEL) | sed -n '1,/^metadata/p' | grep -v '^metadata'
	@echo "== examples/data/vqarad_synpic49914.jpg (a VQA-RAD chest X-ray)"
	$(CLI) report examples/data/vqarad_synpic49914.jpg -m $(DEMO_MODEL)
	$(CLI) vqa examples/data/vqarad_synpic49914.jpg -m $(DEMO_MODEL) $(DEMO_Q)
	@echo "== examples/data/cxr_nih_00006585_008.png (an NIH chest X-ray the model never saw)"
	$(CLI) report examples/data/cxr_nih_00006585_008.png -m $(DEMO_MODEL)
	$(CLI) vqa examples/data/cxr_nih_00006585_008.png -m $(DEMO_MODEL) $(DEMO_Q)
	@if [ -f "$(DEMO_DICOM)" ]; then \
	  echo "== a DICOM CR chest radiograph ($(DEMO_DICOM))"; \
	  $(CLI) image "$(DEMO_DICOM)" --info && \
	  $(CLI) report "$(DEMO_DICOM)" -m $(DEMO_MODEL) && \
	  $(CLI) vqa "$(DEMO_DICOM)" -m $(DEMO_MODEL) $(DEMO_Q); fi
	@echo "(a toy trained on 314 images: not a medical device, its answers are not diagnoses)"

# Retrains the demo model and its blind baseline (about an hour on 2 cores),
# converts, evaluates and compares with the shipped files
# (tools/train/README.md). Needs python3-torch and the npm Gemma 3 tokenizer
# (.ci/deps) and the shared VQA-RAD data.
TRAIN_OUT ?= $(BUILD)/train-demo
train-demo: $(SHARED) $(CLI)
	MG_CLI=$(abspath $(CLI)) sh tools/train/train_all.sh $(TRAIN_OUT)

# VQA-RAD test metrics of the shipped models, measured through the library.
eval-demo: $(SHARED)
	/usr/bin/python3 tools/train/eval_demo.py -m $(DEMO_MODEL) --blind $(DEMO_BLIND)

# The shipped polygenic model (examples/models/POLYGENIC_MODEL_CARD.md): test
# AUC of all 11 questions on the simulated cohort's 10,000 test individuals
# through the library, bootstrap intervals paired with the stored baselines.
# The cohort is simulated first when missing (about a minute, numpy).
PG_MODEL ?= examples/models/medgemini-polygenic-f32.mgm
PG_COHORT ?= $(BUILD)/polygenic/seed1
PG_OUT ?= $(BUILD)/polygenic/eval
eval-polygenic: $(SHARED) $(CLI)
	@[ -f $(PG_COHORT)/scores.npy ] || /usr/bin/python3 tools/polygenic/simulate.py --out $(PG_COHORT)
	MG_LIB=$(abspath $(SHARED)) /usr/bin/python3 tools/polygenic/eval_polygenic.py -m $(PG_MODEL) \
	  --cohort $(PG_COHORT) --cli $(abspath $(CLI)) --out $(PG_OUT)/files \
	  --json $(PG_OUT)/eval.json --md $(PG_OUT)/eval.md

# Retrains the polygenic model (about 35 minutes on one core), converts,
# evaluates, checks parity and compares with the shipped file.
PG_TRAIN_OUT ?= $(BUILD)/polygenic/model
train-polygenic: $(SHARED) $(CLI)
	COHORT=$(PG_COHORT) MG_CLI=$(abspath $(CLI)) MG_LIB=$(abspath $(SHARED)) \
	  sh tools/polygenic/train_all.sh $(PG_TRAIN_OUT)

# Against llama.cpp in the same run (bench/peer; not in CI): builds llama.cpp
# from the npm package node-llama-cpp's source bundle into ~/.cache/mg-peer,
# writes random-weight Gemma 3 GGUFs with its gguf-py, converts them with our
# converter and times prefill 512 / decode 128 on both engines.
bench-peer:
	sh bench/peer/setup.sh && nice -n 15 /usr/bin/python3 bench/peer/make_models.py
	sh bench/peer/run.sh

bench: $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done

# Builds the benchmarks without running them (CI: they must keep compiling).
bench-build: $(BENCH_BIN)

# Generated at every install so that PREFIX is always the one asked for.
$(BUILD)/medgemini.pc: FORCE
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' -e 's|@DEPS_PC@|$(DEPS_PC)|' pkgconfig/medgemini.pc.in > $@
FORCE:

install: $(STATIC) $(SHARED) $(CLI) $(BUILD)/medgemini.pc
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCDIR) $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/medgemini.h $(DESTDIR)$(INCDIR)/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf libmedgemini.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libmedgemini.so
	install -m 644 $(BUILD)/medgemini.pc $(DESTDIR)$(LIBDIR)/pkgconfig/
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/medgemini.h $(DESTDIR)$(LIBDIR)/libmedgemini.* \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/medgemini.pc $(DESTDIR)$(PREFIX)/bin/medgemini

# Installs into a scratch prefix and builds examples/ against it using only
# pkg-config, then runs the result (shared and static).
test-install:
	sh tests/install_test.sh

clean:
	rm -rf lib/obj lib/tests lib/bench lib/tmp lib/asan lib/vg lib/fuzz lib/fuzzcov lib/aarch64 \
	  lib/*.a lib/*.so* bin

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
