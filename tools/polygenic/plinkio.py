"""plinkio.py - PLINK 1 binary sets, wide score files and .sscore files in numpy,
and a reference scorer that computes what plink2 --score (and the library's
`medgemini prs score`) computes, from the files alone.

Only what tools/polygenic needs: autosomal variants (chromosomes 1-22), the
SNP-major .bed, wide score files `ID <allele> <score>...` (plain or gzip),
mean imputation from founder frequencies (plink2's default) or none.

Used by simulate.py (writing), verify.py and export_example.py (reading).
"""
import gzip
import io
import os

import numpy as np

BED_MAGIC = b"\x6c\x1b\x01"

# A1-allele count -> 2-bit .bed code (low bits first in each byte):
# 00 hom A1, 01 missing, 10 het, 11 hom A2. Index 3 stands for "missing".
_CODE_OF_COUNT = np.array([3, 2, 0, 1], dtype=np.uint8)  # count 0, 1, 2, missing(3)
# .bed code -> A1 count, missing = -1
_COUNT_OF_CODE = np.array([2, -1, 1, 0], dtype=np.int8)
# every byte -> its four samples' A1 counts
_BYTE_TABLE = _COUNT_OF_CODE[(np.arange(256)[:, None] >> (2 * np.arange(4))[None, :]) & 3]


def open_text(path, mode="rt"):
    """Plain or gzip text file (gzip when the name ends in .gz)."""
    if path.endswith(".gz"):
        return gzip.open(path, mode)
    return open(path, mode.replace("t", "") if "b" in mode else mode)


# ---- writing ----------------------------------------------------------------

def pack_bed_rows(counts):
    """A1 counts (variants x samples, int8; -1 = missing) -> .bed rows (bytes
    per variant = ceil(samples / 4)), as a (variants, bytes) uint8 array."""
    c = np.asarray(counts)
    nv, ns = c.shape
    codes = _CODE_OF_COUNT[np.where(c < 0, 3, c).astype(np.intp)]
    pad = (-ns) % 4
    if pad:
        codes = np.concatenate([codes, np.zeros((nv, pad), np.uint8)], axis=1)
    codes = codes.reshape(nv, -1, 4)
    return (codes[:, :, 0] | (codes[:, :, 1] << 2) | (codes[:, :, 2] << 4) |
            (codes[:, :, 3] << 6)).astype(np.uint8)


class BedWriter:
    """Writes a SNP-major .bed a block of variants at a time."""

    def __init__(self, path, n_samples):
        self.f = open(path, "wb")
        self.f.write(BED_MAGIC)
        self.n = n_samples

    def write(self, counts):
        assert counts.shape[1] == self.n
        self.f.write(pack_bed_rows(counts).tobytes())

    def close(self):
        self.f.close()


def write_bim(path, chrom, ids, pos, a1, a2):
    with open(path, "w") as f:
        for c, i, p, x, y in zip(chrom, ids, pos, a1, a2):
            f.write(f"{c}\t{i}\t0\t{p}\t{x}\t{y}\n")


def write_fam(path, fid, iid, sex):
    with open(path, "w") as f:
        for a, b, s in zip(fid, iid, sex):
            f.write(f"{a}\t{b}\t0\t0\t{s}\t-9\n")


def format_fixed(units, decimals):
    """Exact decimal text of integers `units` x 10^-decimals ("0" for zero,
    no exponent): the shape the library's wide-file fast path reads, and the
    text whose nearest double both plink2 and the library use."""
    units = np.asarray(units, dtype=np.int64)
    a = np.abs(units)
    ip = a // 10 ** decimals
    fp = a % 10 ** decimals
    out = np.empty(units.shape, dtype=object)
    flat_u, flat_i, flat_f = units.ravel(), ip.ravel(), fp.ravel()
    res = out.ravel()
    fmt = "%s%d.%0" + str(decimals) + "d"
    for k in range(flat_u.size):
        u = flat_u[k]
        res[k] = "0" if u == 0 else fmt % ("-" if u < 0 else "", flat_i[k], flat_f[k])
    return res.reshape(units.shape)


def write_wide(path, ids, alleles, names, units, decimals, compresslevel=6):
    """Wide score file: header `ID A1 <name>...`, one row per variant, weight
    = units x 10^-decimals written exactly. Gzip when path ends in .gz."""
    text = format_fixed(units, decimals)
    buf = io.StringIO()
    buf.write("ID\tA1\t" + "\t".join(names) + "\n")
    for i in range(len(ids)):
        buf.write(ids[i] + "\t" + alleles[i] + "\t" + "\t".join(text[i]) + "\n")
    data = buf.getvalue().encode()
    if path.endswith(".gz"):
        with gzip.GzipFile(path, "wb", compresslevel=compresslevel, mtime=0) as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)


# ---- reading ----------------------------------------------------------------

def read_bim(prefix):
    chrom, ids, pos, a1, a2 = [], [], [], [], []
    with open(prefix + ".bim") as f:
        for line in f:
            t = line.split()
            chrom.append(t[0]); ids.append(t[1]); pos.append(int(t[3])); a1.append(t[4]); a2.append(t[5])
    return dict(chrom=chrom, id=ids, pos=np.array(pos), a1=a1, a2=a2)


def read_fam(prefix):
    fid, iid, founder, sex = [], [], [], []
    with open(prefix + ".fam") as f:
        for line in f:
            t = line.split()
            fid.append(t[0]); iid.append(t[1]); founder.append(t[2] == "0" and t[3] == "0"); sex.append(t[4])
    return dict(fid=fid, iid=iid, founder=np.array(founder), sex=sex)


def read_bed(prefix, n_samples, variants=None):
    """A1 counts (variants x samples, int8, -1 missing) of the given variant
    indices (all when None)."""
    nb = (n_samples + 3) // 4
    raw = np.fromfile(prefix + ".bed", dtype=np.uint8)
    if raw[:3].tobytes() != BED_MAGIC:
        raise ValueError(prefix + ".bed: not a SNP-major PLINK 1 .bed")
    body = raw[3:]
    if body.size % nb:
        raise ValueError(prefix + ".bed: size does not fit the .fam")
    rows = body.reshape(-1, nb)
    if variants is not None:
        rows = rows[np.asarray(variants)]
    return _BYTE_TABLE[rows].reshape(rows.shape[0], nb * 4)[:, :n_samples]


def read_wide(path):
    """(names, ids, alleles, weights (rows x scores float64)); weights parsed
    by Python's float (correctly rounded, as strtod)."""
    with open_text(path) as f:
        head = f.readline().split()
        if len(head) < 3:
            raise ValueError(path + ": header needs ID, allele and weight columns")
        ids, alleles, rows = [], [], []
        for line in f:
            t = line.split()
            if not t:
                continue
            if len(t) != len(head):
                raise ValueError(path + ": wrong field count")
            ids.append(t[0]); alleles.append(t[1]); rows.append(t[2:])
    w = np.array(rows, dtype=np.float64).reshape(len(rows), len(head) - 2)
    return head[2:], ids, alleles, w


def reference_scores(prefix, score_path, mean_imputation=True):
    """plink2 --score (cols=+scoresums,+denom) by numpy from the files: dict of
    fid, iid, names, SUM (samples x scores), AVG, ALLELE_CT, DENOM,
    NAMED_ALLELE_DOSAGE_SUM. Autosomal diploid variants only; rows whose ID is
    absent or whose allele is not one of the variant's are skipped, as plink2
    does."""
    bim = read_bim(prefix)
    fam = read_fam(prefix)
    names, ids, alleles, w = read_wide(score_path)
    index = {v: k for k, v in enumerate(bim["id"])}
    var, named_a1, keep = [], [], []
    for r, (i, a) in enumerate(zip(ids, alleles)):
        v = index.get(i)
        if v is None or a not in (bim["a1"][v], bim["a2"][v]):
            continue
        if bim["chrom"][v] not in [str(c) for c in range(1, 23)]:
            raise ValueError("reference_scores handles autosomes only: " + i)
        var.append(v); named_a1.append(a == bim["a1"][v]); keep.append(r)
    var = np.array(var); named_a1 = np.array(named_a1); w = w[np.array(keep)]
    n = len(fam["iid"])
    x = read_bed(prefix, n, var)                        # variants x samples
    miss = x < 0
    f = fam["founder"]
    called = (~miss[:, f]).sum(axis=1)
    a1sum = np.where(miss[:, f], 0, x[:, f]).sum(axis=1, dtype=np.int64)
    freq_a1 = np.where(called > 0, a1sum / np.maximum(2 * called, 1), 0.0)
    freq = np.where(named_a1, freq_a1, 1.0 - freq_a1)
    freq = np.where(called > 0, freq, 0.0)
    sums = np.zeros((n, w.shape[1]))
    obs_sum = np.zeros(n)
    for lo in range(0, len(var), 256):                   # blocks of variants: memory
        hi = min(len(var), lo + 256)
        xb, mb = x[lo:hi], miss[lo:hi]
        d = np.where(named_a1[lo:hi, None], xb, 2 - xb).astype(np.float64)
        obs_sum += np.where(mb, 0.0, d).sum(axis=0)
        d = np.where(mb, 2.0 * freq[lo:hi, None] if mean_imputation else 0.0, d)
        sums += d.T @ w[lo:hi]
    allele_ct = 2.0 * (~miss).sum(axis=0)
    denom = np.full(n, 2.0 * len(var)) if mean_imputation else allele_ct
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = sums / denom[:, None]
    return dict(fid=fam["fid"], iid=fam["iid"], names=names, SUM=sums, AVG=avg,
                ALLELE_CT=allele_ct, DENOM=denom, NAMED_ALLELE_DOSAGE_SUM=obs_sum)


def read_sscore(path):
    """A .sscore (ours or plink2's): dict of `header`, fid, iid and every other
    column as a float64 array."""
    with open(path) as f:
        header = f.readline().rstrip("\n").lstrip("#").split("\t")
        if header[:2] != ["FID", "IID"]:
            raise ValueError(path + ": expected #FID IID first")
        fid, iid, rows = [], [], []
        for line in f:
            t = line.rstrip("\n").split("\t")
            fid.append(t[0]); iid.append(t[1])
            rows.append(np.array(t[2:], dtype=np.float64))
    vals = np.stack(rows) if rows else np.zeros((0, len(header) - 2))
    out = {"header": header, "fid": fid, "iid": iid}
    for k, h in enumerate(header[2:]):
        out[h] = vals[:, k]
    return out
