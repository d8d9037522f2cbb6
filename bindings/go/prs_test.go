package medgemini

import (
	"bufio"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// writePlink writes a 4-sample, 3-variant PLINK 1 set. geno[v][s] is the
// number of A1 copies (the .bim's 5th column), -1 for a missing call.
func writePlink(t *testing.T, prefix string, geno [][]int) {
	t.Helper()
	fam := "f1 i1 0 0 1 -9\nf2 i2 0 0 2 -9\nf3 i3 0 0 1 -9\nf4 i4 0 0 2 -9\n"
	bim := "1\trs1\t0\t100\tA\tG\n1\trs2\t0\t200\tC\tT\n1\trs3\t0\t300\tG\tA\n"
	bed := []byte{0x6c, 0x1b, 0x01} // magic, SNP-major
	for _, calls := range geno {
		var b byte
		for s, g := range calls {
			// 00: two A1, 01: missing, 10: het, 11: two A2
			code := map[int]byte{2: 0, -1: 1, 1: 2, 0: 3}[g]
			b |= code << (2 * uint(s))
		}
		bed = append(bed, b)
	}
	for ext, data := range map[string][]byte{".fam": []byte(fam), ".bim": []byte(bim), ".bed": bed} {
		if err := os.WriteFile(prefix+ext, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func expectCol(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
	for i := range got {
		if !near(got[i], want[i]) {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
	}
}

func TestPRSHandComputed(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "toy")
	writePlink(t, prefix, [][]int{
		{2, 1, 0, -1}, // rs1 A copies; sample 4 missing
		{0, 1, 2, 1},  // rs2 C copies
		{1, 1, 0, 2},  // rs3 G copies
	})
	score := filepath.Join(dir, "toy.score")
	os.WriteFile(score, []byte("ID\tA1\tw1\tw2\n"+
		"rs1\tA\t0.5\t-1\n"+
		"rs2\tT\t2.0\t0.25\n"+ // T is the A2 allele: dosage 2 - C copies
		"rs3\tG\t1.0\t0\n"+
		"rsABSENT\tA\t9\t9\n"), 0o644)

	p, err := OpenPlink(prefix, PRSThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Samples() != 4 || p.Variants() != 3 || p.Scores() != 0 {
		t.Fatalf("counts %d %d %d", p.Samples(), p.Variants(), p.Scores())
	}
	// founder frequencies: rs1 has 3 of 6 observed alleles (one call
	// missing), rs2 4 of 8; read back as the frequencies to impute with
	freq := filepath.Join(dir, "toy.afreq")
	if err := p.WriteFreq(freq); err != nil {
		t.Fatal(err)
	}
	ft, _ := os.ReadFile(freq)
	lines := strings.Split(strings.TrimSpace(string(ft)), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[1], "\t0.5\t6") || !strings.HasSuffix(lines[2], "\t0.5\t8") {
		t.Fatalf("frequencies:\n%s", ft)
	}
	if err := p.ReadFreq(freq); err != nil {
		t.Fatal(err)
	}
	if err := p.Compute(); !errors.Is(err, ErrMisuse) {
		t.Fatalf("compute without scores: %v", err)
	}
	if _, err := p.Sums(0); !errors.Is(err, ErrMisuse) {
		t.Fatalf("results before compute: %v", err)
	}
	n, err := p.AddScores(score)
	if err != nil || n != 2 {
		t.Fatalf("AddScores: %d, %v", n, err)
	}
	if names := p.ScoreNames(); len(names) != 2 || names[0] != "w1" || names[1] != "w2" {
		t.Fatalf("names %v", names)
	}
	if err := p.Compute(); err != nil {
		t.Fatal(err)
	}
	ids, err := p.SampleIDs()
	if err != nil || len(ids) != 4 || ids[2] != (SampleID{"f3", "i3"}) {
		t.Fatalf("ids %v, %v", ids, err)
	}
	// By hand. Sample 4's rs1 call is missing: mean imputation with the
	// founders' A frequency (2+1+0)/6 = 0.5, dosage 2*0.5 = 1.
	// dosages:        rs1 A      rs2 T       rs3 G
	//   s1             2          2           1
	//   s2             1          1           1
	//   s3             0          0           0
	//   s4            (1)         1           2
	// w1 = 0.5, 2, 1:  s1 1+4+1 = 6, s2 0.5+2+1 = 3.5, s3 0, s4 0.5+2+2 = 4.5
	// w2 = -1, .25, 0: s1 -2+.5 = -1.5, s2 -1+.25 = -.75, s3 0, s4 -1+.25 = -.75
	sum1, _ := p.Sums(0)
	expectCol(t, "w1 SUM", sum1, []float64{6, 3.5, 0, 4.5})
	sum2, _ := p.Results(ColSum, 1)
	expectCol(t, "w2 SUM", sum2, []float64{-1.5, -0.75, 0, -0.75})
	ct, _ := p.Results(ColAlleleCount, 0)
	expectCol(t, "ALLELE_CT", ct, []float64{6, 6, 6, 4})
	den, _ := p.Results(ColDenom, 0)
	expectCol(t, "DENOM", den, []float64{6, 6, 6, 6})
	avg, _ := p.Averages(0)
	expectCol(t, "w1 AVG", avg, []float64{1, 3.5 / 6, 0, 0.75})
	named, _ := p.Results(ColNamedAlleleDosageSum, 0)
	expectCol(t, "NAMED_ALLELE_DOSAGE_SUM", named, []float64{5, 3, 0, 3})

	mr, err := p.MatchReport(0)
	if err != nil || !mr.Kept || mr.Rows != 4 || mr.Matched != 3 {
		t.Fatalf("match report %+v, %v", mr, err)
	}
	if _, err := p.MatchReport(5); err == nil {
		t.Fatal("match report out of range")
	}

	// the .sscore file carries the same numbers
	out := filepath.Join(dir, "out.sscore")
	if err := p.WriteSScore(out); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(out)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	header := strings.Split(sc.Text(), "\t")
	col := map[string]int{}
	for i, h := range header {
		col[h] = i
	}
	row := 0
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		v, _ := strconv.ParseFloat(fields[col["w1_SUM"]], 64)
		if !near(v, sum1[row]) || fields[col["IID"]] != ids[row].IID {
			t.Fatalf("sscore row %d: %v", row, fields)
		}
		row++
	}
	if row != 4 {
		t.Fatalf("%d sscore rows", row)
	}

	// no-mean-imputation: sample 4's missing call adds nothing, DENOM = ALLELE_CT
	q, err := OpenPlink(prefix, PRSFlags(PRSNoMeanImputation), PRSMinOverlap(0), PRSBlockVariants(2))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.AddScores(score); err != nil {
		t.Fatal(err)
	}
	if err := q.Compute(); err != nil {
		t.Fatal(err)
	}
	s1, _ := q.Sums(0)
	expectCol(t, "no-mean-imputation w1 SUM", s1, []float64{6, 3.5, 0, 4})
	d1, _ := q.Results(ColDenom, 0)
	expectCol(t, "no-mean-imputation DENOM", d1, []float64{6, 6, 6, 4})
}

func TestPRSErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := OpenPlink(filepath.Join(dir, "none"))
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusIO || !strings.Contains(e.Message, "none") {
		t.Fatalf("missing set: %v", err)
	}
	prefix := filepath.Join(dir, "toy")
	writePlink(t, prefix, [][]int{{0, 0, 0, 0}, {1, 1, 1, 1}, {2, 2, 2, 2}})
	os.WriteFile(prefix+".bed", []byte{0x6c, 0x1b, 0x01, 0}, 0o644) // too short
	if _, err := OpenPlink(prefix); !errors.Is(err, ErrDataFormat) {
		t.Fatalf("short .bed: %v", err)
	}
	writePlink(t, prefix, [][]int{{0, 0, 0, 0}, {1, 1, 1, 1}, {2, 2, 2, 2}})
	p, err := OpenPlink(prefix)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.score")
	os.WriteFile(bad, []byte("ID\tA1\tw\nrs1\tA\tnot-a-number\n"), 0o644)
	_, err = p.AddScores(bad)
	if !errors.As(err, &e) || e.Status != StatusDataFormat || !strings.Contains(e.Message, "bad.score") {
		t.Fatalf("bad score file: %v", err)
	}
	if _, err := p.AddScores(filepath.Join(dir, "nofile")); !errors.Is(err, ErrIO) {
		t.Fatalf("missing score file: %v", err)
	}
	if err := p.ReadFreq(filepath.Join(dir, "nofile.afreq")); !errors.Is(err, ErrIO) {
		t.Fatalf("missing freq file: %v", err)
	}
	p.Close()
	if err := p.Compute(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
	if _, err := OpenVCF(filepath.Join(dir, "none.vcf")); err == nil {
		t.Fatal("missing VCF opened")
	}
}

// A tiny VCF with hard calls and DS dosages, scored by hand.
func TestPRSVCF(t *testing.T) {
	dir := t.TempDir()
	vcf := filepath.Join(dir, "toy.vcf")
	os.WriteFile(vcf, []byte("##fileformat=VCFv4.2\n"+
		"##contig=<ID=1>\n"+
		"##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">\n"+
		"##FORMAT=<ID=DS,Number=A,Type=Float,Description=\"Dosage\">\n"+
		"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\n"+
		"1\t100\trs1\tA\tG\t.\tPASS\t.\tGT:DS\t0/1:0.5\t1/1:2\n"+
		"1\t200\trs2\tC\tT\t.\tPASS\t.\tGT\t0/0\t0/1\n"), 0o644)
	score := filepath.Join(dir, "v.score")
	os.WriteFile(score, []byte("ID\tA1\tw\nrs1\tG\t2\nrs2\tT\t-1\n"), 0o644)
	p, err := OpenVCF(vcf, PRSDosage(DosageDS))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.AddScores(score); err != nil {
		t.Fatal(err)
	}
	if err := p.Compute(); err != nil {
		t.Fatal(err)
	}
	// S1: 2*0.5 (DS) - 1*0 = 1; S2: 2*2 - 1*1 = 3
	s, _ := p.Sums(0)
	expectCol(t, "VCF SUM", s, []float64{1, 3})
	ids, _ := p.SampleIDs()
	if len(ids) != 2 || ids[0].IID != "S1" {
		t.Fatalf("ids %v", ids)
	}
}
