"""Tests of bindings/check_drift.py on the real tree and on deliberately
broken copies. Run: python3 -m unittest discover -s bindings/tests
(needs the library built: make)."""
import io
import os
import re
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
import check_drift  # noqa: E402

LIB = os.environ.get("MG_LIB") or os.path.join(ROOT, "lib", "libmedgemini.so.0")
HEADER = os.path.join(ROOT, "include", "medgemini.h")


def run(root, **kw):
    buf = io.StringIO()
    kw.setdefault("lib", LIB)
    kw.setdefault("header", HEADER)
    n = check_drift.check(root, out=buf, **kw)
    return n, buf.getvalue()


@unittest.skipUnless(os.path.exists(LIB), "library not built (run make)")
class RealTree(unittest.TestCase):
    def test_header_matches_library(self):
        protos = check_drift.header_prototypes(HEADER)
        exported = check_drift.exported_symbols(LIB)
        self.assertEqual(set(protos), exported)
        # a few arities counted by hand from the header
        self.assertEqual(protos["mg_version_number"], 0)      # (void)
        self.assertEqual(protos["mg_image_from_pixels"], 9)
        self.assertEqual(protos["mg_detokenize"], 7)          # multi-line
        self.assertEqual(protos["mg_prs_predict"], 8)         # risk added
        self.assertEqual(protos["mg_prs_predict_batch"], 8)
        self.assertEqual(protos["mg_prs_score_image"], 7)
        self.assertEqual(protos["mg_string_free"], 1)
        # the volume slices and volume tasks (multi-line prototypes)
        self.assertEqual(protos["mg_slice_params_init"], 1)
        self.assertEqual(protos["mg_volume_slices"], 8)
        self.assertEqual(protos["mg_generate_report_volume"], 5)
        self.assertEqual(protos["mg_vqa_volume"], 6)
        self.assertEqual(protos["mg_context_tokens"], 4)

    def test_python_binding_is_complete(self):
        n, out = run(ROOT, only=["python"])
        self.assertEqual(n, 0, out)
        self.assertIn("python: ok", out)

    def test_main_exit_status(self):
        rc = check_drift.main(["--root", ROOT, "--lib", LIB, "--only", "python"])
        self.assertEqual(rc, 0)


@unittest.skipUnless(os.path.exists(LIB), "library not built (run make)")
class BrokenCopies(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.protos = check_drift.header_prototypes(HEADER)

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def write(self, rel, text):
        path = os.path.join(self.tmp, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def test_absent_bindings_are_skipped_unless_required(self):
        n, out = run(self.tmp)
        self.assertEqual(n, 0, out)
        self.assertEqual(out.count("skipped"), 3)
        n, out = run(self.tmp, require=["go"])
        self.assertEqual(n, 1, out)
        self.assertIn("go: bindings/go does not exist", out)

    def test_python_missing_and_wrong_arity(self):
        src = os.path.join(ROOT, "bindings", "python", "medgemini")
        dst = os.path.join(self.tmp, "bindings", "python", "medgemini")
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        lib_py = os.path.join(dst, "_lib.py")
        with open(lib_py) as f:
            text = f.read()
        text = re.sub(r'(?m)^mg_vqa = _fn\("mg_vqa".*\n', "", text)          # missing
        text = text.replace('_fn("mg_tokenizer_piece", c_char_p, [P, c_int32])',
                            '_fn("mg_tokenizer_piece", c_char_p, [P])')       # arity 1
        text += '\nmg_gone = _fn("mg_gone", None, [])\n'                      # stale
        with open(lib_py, "w") as f:
            f.write(text)
        n, out = run(self.tmp, only=["python"])
        self.assertEqual(n, 3, out)
        self.assertIn("python: mg_vqa is not bound", out)
        self.assertRegex(out, r"mg_tokenizer_piece at .*_lib.py:\d+ has 1 parameters, the header 2")
        self.assertIn("mg_gone", out)
        rc = check_drift.main(["--root", self.tmp, "--lib", LIB, "--header", HEADER,
                               "--only", "python"])
        self.assertEqual(rc, 1)

    def _go_arg(self, i):
        # arguments of increasing syntactic difficulty
        forms = ["&out", "C.size_t(len(buf))", "(*C.char)(unsafe.Pointer(&b[0]))",
                 "f(a, b)", "x[1:2]", "\"s,(\"", "'('", "T{a, b}"]
        return forms[i % len(forms)]

    def go_source(self, skip=(), wrong=None):
        lines = ["package medgemini", "", "/*", "#include <medgemini.h>",
                 "static mg_status call_gen(char **o, mg_context *c, const char *p) {",
                 "    return mg_generate(o, c, p, NULL);", "}", "*/", 'import "C"', "",
                 "// C.mg_commented_out(1) is ignored",
                 "func f() {", '    s := "C.mg_in_string(1, 2)"']
        for name, n in sorted(self.protos.items()):
            if name in skip:
                continue
            args = ", ".join(self._go_arg(i) for i in range(n))
            lines.append("    _ = C.mg_%s(%s)" % (name[3:], args))
        if wrong:
            lines.append("    _ = C.%s(%s)" % (wrong, ", ".join(["x"] * (self.protos[wrong] + 1))))
        lines.append("}")
        return "\n".join(lines) + "\n"

    def test_go_ok_then_broken(self):
        self.write("bindings/go/medgemini.go", self.go_source())
        n, out = run(self.tmp, only=["go"])
        self.assertEqual(n, 0, out)
        # mg_generate also called from the C preamble with 4 arguments: fine.
        # Now a second call site with one argument too many, and one missing.
        self.write("bindings/go/medgemini.go", self.go_source(skip={"mg_prs_compute"}))
        self.write("bindings/go/other.go",
                   "package medgemini\n\nimport \"C\"\n\nfunc g() { C.mg_vqa(a, b) }\n")
        n, out = run(self.tmp, only=["go"])
        self.assertEqual(n, 2, out)
        self.assertIn("go: mg_prs_compute is not bound", out)
        self.assertRegex(out, r"mg_vqa at .*other.go:5 has 2 parameters, the header 6")

    def test_go_preamble_wrong_arity(self):
        src = self.go_source().replace("return mg_generate(o, c, p, NULL);",
                                       "return mg_generate(o, c, p);")
        self.write("bindings/go/medgemini.go", src)
        n, out = run(self.tmp, only=["go"])
        self.assertEqual(n, 1, out)
        self.assertRegex(out, r"mg_generate at .*medgemini.go:6 has 3 parameters, the header 4")

    def rust_source(self, skip=(), wrong=None):
        lines = ["use std::os::raw::{c_char, c_void};", "",
                 "pub type Cb = Option<unsafe extern \"C\" fn(*mut c_void, *const c_char, usize, i32) -> i32>;",
                 "", "// fn mg_commented(a: i32);",
                 "extern \"C\" {"]
        for name, n in sorted(self.protos.items()):
            if name in skip:
                continue
            params = []
            for i in range(n):
                params.append(["a%d: *mut *mut c_void" % i,
                               "b%d: Option<unsafe extern \"C\" fn(*mut c_void, i32) -> i32>" % i,
                               "c%d: *const *const c_char" % i][i % 3])
            if name == wrong:
                params.append("extra: i32")
            lines.append("    pub fn %s(%s) -> i32;" % (name, ",\n        ".join(params)))
        lines.append("}")
        lines.append("pub fn mg_not_ffi(a: i32, b: i32) {}  // outside the extern block")
        return "\n".join(lines) + "\n"

    def test_rust_ok_then_broken(self):
        path = "bindings/rust/medgemini-sys/src/lib.rs"
        self.write(path, self.rust_source())
        n, out = run(self.tmp, only=["rust"])
        self.assertEqual(n, 0, out)
        self.write(path, self.rust_source(skip={"mg_writer_finish"}, wrong="mg_convert"))
        n, out = run(self.tmp, only=["rust"])
        self.assertEqual(n, 2, out)
        self.assertIn("rust: mg_writer_finish is not bound", out)
        self.assertRegex(out, r"mg_convert at .*lib.rs:\d+ has 6 parameters, the header 5")
        # cargo's target/ folder is not read
        self.write("bindings/rust/target/debug/build/out.rs", 'extern "C" { fn mg_vqa(); }\n')
        n2, out2 = run(self.tmp, only=["rust"])
        self.assertEqual(n2, 2, out2)


class HeaderParsing(unittest.TestCase):
    def test_synthetic_header(self):
        text = r'''
/* mg_in_comment(int a); */
#define MG_MACRO(x) \
    mg_fake(x, \
            y)
#ifdef __cplusplus
extern "C" {
#endif
typedef int32_t (*mg_cb)(void *user, const char *s, size_t n);
typedef struct mg_thing { uint32_t struct_size; mg_cb cb; } mg_thing;
MG_API uint32_t mg_none(void);
MG_API mg_status mg_multi(char **out,
                          const mg_thing *const *things, // a comment, with commas
                          size_t n, int (*pick)(void *, int, int),
                          const char *s);
MG_API void mg_arr(int a[4], int b);
const char *mg_nomacro(const mg_thing *t);
#ifdef __cplusplus
}
#endif
'''
        with tempfile.NamedTemporaryFile("w", suffix=".h", delete=False) as f:
            f.write(text)
        try:
            protos = check_drift.header_prototypes(f.name)
        finally:
            os.unlink(f.name)
        self.assertEqual(protos, {"mg_none": 0, "mg_multi": 5, "mg_arr": 2, "mg_nomacro": 1})

    def test_symbols_file_and_header_mismatch(self):
        tmp = tempfile.mkdtemp()
        try:
            with open(os.path.join(tmp, "h.h"), "w") as f:
                f.write("int mg_a(int x);\nint mg_b(void);\n")
            with open(os.path.join(tmp, "syms"), "w") as f:
                f.write("mg_a\nmg_c\n")
            buf = io.StringIO()
            n = check_drift.check(tmp, lib="unused", header=os.path.join(tmp, "h.h"),
                                  symbols_file=os.path.join(tmp, "syms"), out=buf)
            out = buf.getvalue()
            self.assertEqual(n, 2, out)
            self.assertIn("mg_c is exported but has no prototype", out)
            self.assertIn("mg_b is declared in the header but not exported", out)
        finally:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    unittest.main()
