"""PRS scoring on a small PLINK set written here, against scores computed by
hand (numpy) and, when installed, against plink2 --score."""
import os
import shutil
import subprocess
import threading

import pytest

import medgemini

np = pytest.importorskip("numpy")

PAIRS = [("A", "C"), ("A", "G"), ("C", "T"), ("G", "T"), ("C", "A"), ("T", "G")]


def make_set(dirpath, n=37, m=23, missing=0.0, seed=3):
    """Writes P.bed/.bim/.fam and P.score; returns what the hand computation
    needs: genotypes g (A1 counts, -1 missing), effect-is-A1 flags, weights."""
    rng = np.random.default_rng(seed)
    prefix = os.path.join(dirpath, "cohort")
    g = rng.integers(0, 3, size=(m, n))
    if missing:
        g[rng.random((m, n)) < missing] = -1
    alleles = [PAIRS[i] for i in rng.integers(0, len(PAIRS), m)]
    with open(prefix + ".fam", "w") as f:
        for s in range(n):
            f.write("F%d I%d 0 0 %d -9\n" % (s, s, 1 + s % 2))
    with open(prefix + ".bim", "w") as f:
        for v in range(m):
            f.write("1\trs%d\t0\t%d\t%s\t%s\n" % (v, 1000 + 10 * v, *alleles[v]))
    code = {2: 0b00, 1: 0b10, 0: 0b11, -1: 0b01}
    with open(prefix + ".bed", "wb") as f:
        f.write(bytes([0x6C, 0x1B, 0x01]))
        for v in range(m):
            row = bytearray((n + 3) // 4)
            for s in range(n):
                row[s // 4] |= code[int(g[v, s])] << (2 * (s % 4))
            f.write(bytes(row))
    scored = [v for v in range(m) if v % 7 != 3]          # some variants unscored
    effect_a1 = rng.random(m) < 0.5
    w = np.round(rng.normal(0, 1, (m, 2)), 4)
    with open(prefix + ".score", "w") as f:
        f.write("ID\tA1\tsA\tsB\n")
        for v in scored:
            allele = alleles[v][0] if effect_a1[v] else alleles[v][1]
            f.write("rs%d\t%s\t%r\t%r\n" % (v, allele, w[v, 0], w[v, 1]))
        f.write("rs_absent\tA\t1.0\t1.0\n")               # skipped: not in the target
    return prefix, dict(g=g, scored=scored, effect_a1=effect_a1, w=w, n=n, m=m)


def hand_scores(d):
    g, n = d["g"], d["n"]
    sums = np.zeros((2, n))
    dos_sum = np.zeros(n)
    allele_ct = np.zeros(n)
    for v in d["scored"]:
        e = np.where(g[v] < 0, -1, g[v] if d["effect_a1"][v] else 2 - g[v]).astype(float)
        ok = e >= 0
        mean = e[ok].sum() / ok.sum()                      # 2 x effect allele frequency
        e_imp = np.where(ok, e, mean)
        sums += np.outer(d["w"][v], e_imp)
        dos_sum += np.where(ok, e, 0)                     # observed calls only (as plink2)
        allele_ct += 2 * ok
    denom = 2.0 * len(d["scored"])
    return {"sA_SUM": sums[0], "sB_SUM": sums[1], "sA_AVG": sums[0] / denom,
            "sB_AVG": sums[1] / denom, "ALLELE_CT": allele_ct,
            "DENOM": np.full(n, denom), "NAMED_ALLELE_DOSAGE_SUM": dos_sum}


def check_against(res, want, rel=1e-9, skip=()):
    for k, v in want.items():
        if k in skip:
            continue
        np.testing.assert_allclose(res[k], v, rtol=rel, atol=1e-12, err_msg=k)


def test_plink_scores_by_hand(tmp_path):
    prefix, d = make_set(str(tmp_path))
    with medgemini.Prs.open_plink(prefix, threads=2) as prs:
        assert (prs.n_samples, prs.n_variants) == (d["n"], d["m"])
        assert prs.add_scores(prefix + ".score") == 2
        assert prs.score_names == ["sA", "sB"]
        prs.compute()
        res = prs.results()
        r = prs.match_report(0)
        assert r.kept and r.n_matched == len(d["scored"])
    assert list(res["IID"]) == ["I%d" % s for s in range(d["n"])]
    assert list(res["FID"]) == ["F%d" % s for s in range(d["n"])]
    assert set(res) == {"FID", "IID", "ALLELE_CT", "DENOM", "NAMED_ALLELE_DOSAGE_SUM",
                        "sA_AVG", "sA_SUM", "sB_AVG", "sB_SUM"}
    assert all(res[k].dtype == np.float64 for k in res if k not in ("FID", "IID"))
    check_against(res, hand_scores(d))


def test_mean_imputation_by_hand_and_sscore(tmp_path):
    prefix, d = make_set(str(tmp_path), n=50, m=31, missing=0.15, seed=11)
    prs = medgemini.Prs.open_plink(prefix)
    prs.add_scores(prefix + ".score")
    res = prs.compute().results()
    check_against(res, hand_scores(d))
    out = str(tmp_path / "ours.sscore")
    prs.write_sscore(out)
    rows = [l.rstrip("\n").split("\t") for l in open(out)]
    head = rows[0]
    assert head[:2] == ["#FID", "IID"]
    for j, col in enumerate(head[2:], 2):
        vals = np.array([float(r[j]) for r in rows[1:]])
        np.testing.assert_allclose(vals, res[col], rtol=1e-5, err_msg=col)
    prs.close()
    with pytest.raises(medgemini.MisuseError):
        prs.compute()


@pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 not installed")
def test_against_plink2(tmp_path):
    prefix, d = make_set(str(tmp_path), n=64, m=40, missing=0.1, seed=5)
    out = str(tmp_path / "pl")
    subprocess.run(["plink2", "--bfile", prefix, "--score", prefix + ".score", "1", "2",
                    "header-read", "cols=+scoresums,+denom", "--score-col-nums", "3-4",
                    "--out", out, "--threads", "1"], check=True, capture_output=True)
    rows = [l.split() for l in open(out + ".sscore")]
    head = rows[0]
    with medgemini.Prs.open_plink(prefix) as prs:
        prs.add_scores(prefix + ".score")
        res = prs.compute().results()
    iid = head.index("IID")
    assert [r[iid] for r in rows[1:]] == list(res["IID"])
    compared = 0
    for j, col in enumerate(head):
        if col in res and col not in ("IID", "FID", "#FID"):
            vals = np.array([float(r[j]) for r in rows[1:]])
            np.testing.assert_allclose(res[col], vals, rtol=2e-5, atol=2e-6, err_msg=col)
            compared += 1
    assert compared >= 5, head


def test_vcf_agrees_with_plink(tmp_path):
    prefix, d = make_set(str(tmp_path), n=20, m=15, missing=0.1, seed=9)
    bim = [l.split() for l in open(prefix + ".bim")]
    gt = {2: "1/1", 1: "0/1", 0: "0/0", -1: "./."}
    vcf = str(tmp_path / "c.vcf")
    with open(vcf, "w") as f:
        f.write("##fileformat=VCFv4.2\n##contig=<ID=1>\n")
        f.write('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
        f.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" +
                "\t".join("I%d" % s for s in range(d["n"])) + "\n")
        for v, (chrom, vid, _, pos, a1, a2) in enumerate(bim):
            f.write("\t".join([chrom, pos, vid, a2, a1, ".", ".", ".", "GT"] +
                              [gt[int(x)] for x in d["g"][v]]) + "\n")
    with medgemini.Prs.open_vcf(vcf, dosage="none") as prs:
        prs.add_scores(prefix + ".score")
        res = prs.compute().results()
    assert list(res["FID"]) == ["0"] * d["n"]
    check_against(res, hand_scores(d))


def test_prs_errors(tmp_path):
    prefix, _ = make_set(str(tmp_path), n=8, m=5)
    with pytest.raises(medgemini.FileAccessError) as e:
        medgemini.Prs.open_plink(str(tmp_path / "missing"))
    assert e.value.status == 4
    with open(prefix + ".bed", "ab") as f:
        f.write(b"\0")                                     # wrong size
    with pytest.raises(medgemini.DataFormatError) as e:
        medgemini.Prs.open_plink(prefix)
    assert e.value.status == 16 and ".bed" in e.value.message
    prefix, _ = make_set(str(tmp_path), n=8, m=5)
    with medgemini.Prs.open_plink(prefix) as prs:
        with pytest.raises(medgemini.MisuseError):
            prs.compute()                                  # no score yet
        bad = tmp_path / "bad.score"
        bad.write_text("ID\tA1\tsX\nrs0\tA\tnot-a-number\n")
        with pytest.raises(medgemini.DataFormatError) as e:
            prs.add_scores(bad)
        assert "bad.score" in e.value.message
        with pytest.raises(medgemini.InvalidArgumentError):
            prs.column("NOPE")
    with pytest.raises(medgemini.InvalidArgumentError):
        medgemini.Prs.open_plink(prefix, model="quadratic")


def test_prs_handle_is_serialised_across_threads(tmp_path):
    prefix, d = make_set(str(tmp_path), n=40, m=30, seed=4)
    want = hand_scores(d)
    errors = []
    with medgemini.Prs.open_plink(prefix) as prs:
        prs.add_scores(prefix + ".score")

        def work():
            try:
                for _ in range(5):
                    res = prs.compute().results()
                    check_against(res, want)
            except Exception as exc:  # pragma: no cover
                errors.append(exc)
        ts = [threading.Thread(target=work) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert not errors, errors


def test_double_sums_option(tmp_path):
    """double_sums=True takes the double path even where AMX or VNNI makes the
    default exact integer sums: both agree with the hand computation."""
    prefix, d = make_set(str(tmp_path), n=40, m=29, missing=0.1, seed=5)
    out = {}
    for ds in (False, True):
        with medgemini.Prs.open_plink(prefix, double_sums=ds) as prs:
            prs.add_scores(prefix + ".score")
            out[ds] = prs.compute().results()
        check_against(out[ds], hand_scores(d))
    for k in ("sA_SUM", "sB_SUM"):
        np.testing.assert_allclose(out[False][k], out[True][k], rtol=1e-12, atol=1e-12, err_msg=k)
