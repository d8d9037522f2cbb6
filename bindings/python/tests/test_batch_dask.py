"""medgemini.batch on a 2-worker Dask LocalCluster: reports per study equal
to the same calls in this process, resumable, with per-study failures
recorded; polygenic scores sharded by samples equal to one process."""
import json
import os
import shutil

import pytest

import medgemini
from conftest import ROOT, SHARED

pytest.importorskip("distributed")
from medgemini import batch  # noqa: E402

DCM = os.path.join(SHARED, "dicom")
DEMO = os.path.join(ROOT, "examples", "models", "medgemini-demo-q8_0.mgm")
PGS = os.path.join(SHARED, "pgs")


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster
    batch.worker_env()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as lc, Client(lc) as c:
        yield c


@pytest.mark.skipif(not os.path.isdir(DCM), reason="shared DICOM data not present")
def test_reports_per_study(tmp_path, cluster):
    export = tmp_path / "export"
    shutil.copytree(os.path.join(DCM, "cr_chest"), export / "a")
    shutil.copytree(os.path.join(DCM, "cr_other"), export / "b")
    shutil.copytree(os.path.join(DCM, "ct_series_3slice"), export / "c")
    # a study of its own whose image has no pixels (its Pixel Data element
    # renamed to a private one): listed as a study, its failure recorded
    bad = export / "d" / "bad.dcm"
    bad.parent.mkdir()
    data = open(os.path.join(DCM, "cr_chest", "RG1_J2KI_decoded_ExplicitVRLittleEndian.dcm"),
                "rb").read()
    uid, new = b"1.3.6.1.4.1.5962.1.2.9.20040826185059.5457", b"1.3.6.1.4.1.5962.1.2.9.20040826185059.5458"
    at = data.rindex(b"\xe0\x7f\x10\x00")
    bad.write_bytes((data[:at] + b"\xe1\x7f\x10\x00" + data[at + 4:]).replace(uid, new))
    out = tmp_path / "r.jsonl"
    gen = {"max_tokens": 24}
    s = batch.report_studies([str(export)], DEMO, str(out), client=cluster, **gen)
    assert s["studies"] == 4 and s["done"] == 3 and s["failed"] == 1, s
    recs = {r["study_uid"]: r for r in batch.read_results(str(out))}
    assert len(recs) == 4
    assert recs[new.decode()]["status"] == "error" and "Pixel Data" in recs[new.decode()]["error"]
    assert len({r["worker"] for r in recs.values()}) >= 1
    # the same reports, made here
    st = medgemini.scan_studies([str(export)])
    with medgemini.Model.load(DEMO, threads=1) as m:
        for study in st:
            r = recs[study.uid]
            if r["status"] != "ok":
                continue
            if study.kind == "volume":
                ct = max((se for se in study.series if se.modality == "CT"), key=lambda x: len(x.files))
                with medgemini.Volume.from_dicom(ct.files) as v:
                    want = m.report_volume(v, **gen)
            else:
                imgs = [medgemini.Image.open(f) for f in (study.frontal, study.lateral) if f]
                want = m.report(imgs, **gen)
                for i in imgs:
                    i.close()
            assert r["report"] == want, (study.uid, r["report"], want)
    # resume: the finished studies are not done again, the failed one is retried
    s2 = batch.report_studies([str(export)], DEMO, str(out), client=cluster, **gen)
    assert s2["already"] == 3 and s2["done"] == 0 and s2["failed"] == 1, s2
    assert len(open(out).read().splitlines()) == 5
    # CSV and SRs
    out_csv, srs = tmp_path / "r.csv", tmp_path / "srs"
    s3 = batch.report_studies([str(export / "a"), str(export / "c")], DEMO, str(out_csv),
                              client=cluster, sr_dir=str(srs), **gen)
    assert s3["done"] == 2
    rows = batch.read_results(str(out_csv))
    assert {r["status"] for r in rows} == {"ok"} and all(os.path.exists(r["sr"]) for r in rows)
    with pytest.raises(medgemini.InvalidArgumentError):
        batch.report_studies([str(export)], DEMO, str(tmp_path / "r.txt"), client=cluster)


@pytest.mark.skipif(not os.path.isdir(PGS), reason="shared PGS data not present")
@pytest.mark.parametrize("shards", [2, 3])
def test_prs_sharded_equals_one_process(tmp_path, cluster, shards):
    np = pytest.importorskip("numpy")
    src = os.path.join(PGS, "genotypes", "cineca_synthetic_subset", "cineca_synthetic_subset")
    score = os.path.join(PGS, "golden_plink2", "cineca_22_additive_0.scorefile.gz")
    # the CINECA target with IDs chr:pos:REF:ALT (as the golden score file
    # names them, golden_plink2/PROVENANCE.md) and 3 % of its calls made
    # missing, so that mean imputation (the frequencies) matters
    bfile = str(tmp_path / "cohort")
    with open(src + ".bim") as f, open(bfile + ".bim", "w") as g:
        for line in f:
            c, _id, cm, pos, a1, a2 = line.split()
            g.write("\t".join([c, "%s:%s:%s:%s" % (c, pos, a2, a1), cm, pos, a1, a2]) + "\n")
    shutil.copyfile(src + ".fam", bfile + ".fam")
    raw = np.frombuffer(open(src + ".bed", "rb").read(), dtype=np.uint8)
    n = sum(1 for _ in open(src + ".fam"))
    rows = raw[3:].reshape(-1, (n + 3) // 4).copy()
    rng = np.random.default_rng(7)
    for shift in (0, 2, 4, 6):
        hit = rng.random(rows.shape) < 0.03
        rows[hit] = (rows[hit] & ~np.uint8(3 << shift)) | np.uint8(1 << shift)
    open(bfile + ".bed", "wb").write(raw[:3].tobytes() + rows.tobytes())
    with medgemini.Prs.open_plink(bfile, threads=1) as p:
        p.add_scores(score)
        want = p.compute().results()
        freq = tmp_path / "f.afreq"
        p.write_freq(str(freq))
    got = batch.prs_sharded(bfile, [score], client=cluster, shards=shards)
    assert list(got.keys()) == list(want.keys())
    for k in want:
        if k in ("FID", "IID"):
            assert list(got[k]) == list(want[k])
        else:
            assert np.array_equal(got[k], want[k], equal_nan=True), k
    sums = [k for k in want if k.endswith("_SUM")]
    assert sums and all(np.count_nonzero(want[k]) > n // 2 for k in sums)
    assert np.count_nonzero(want["ALLELE_CT"] != want["DENOM"]) > n // 2  # calls were missing
    # the frequency file holds one line per variant, read back by read_freq
    lines = open(freq).read().splitlines()
    assert lines[0].startswith("#CHROM\tID\tREF\tALT\tALT_FREQS")
    with medgemini.Prs.open_plink(bfile) as p:
        assert len(lines) - 1 == p.n_variants
        p.read_freq(str(freq))
