package medgemini

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestWriteSR(t *testing.T) {
	root := repoRoot(t)
	cr := filepath.Join(root, "..", "shared", "data", "dicom", "cr_chest", "RG1_J2KI.dcm")
	out := filepath.Join(t.TempDir(), "sr.dcm")
	png := filepath.Join(root, "examples", "data", "cxr_nih_00006585_008.png")
	if err := WriteSR(out, "text", []string{png}, SROptions{}); !errors.Is(err, ErrImageFormat) {
		t.Fatalf("a PNG source: %v", err)
	}
	if err := WriteSR(out, "text", nil, SROptions{}); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("no sources: %v", err)
	}
	if _, err := os.Stat(cr); err != nil {
		t.Skip("shared DICOM data not present")
	}
	if err := WriteSR(out, "Findings: Clear.\nImpression: Normal.", []string{cr},
		SROptions{ModelName: "demo.mgm", SeriesNumber: 5}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil || len(data) < 132 || string(data[128:132]) != "DICM" {
		t.Fatalf("not a DICOM file: %v", err)
	}
	// dcmtk renders it without a warning when installed
	if _, err := exec.LookPath("dsrdump"); err == nil {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command("dsrdump", out)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Fatalf("dsrdump: %v %s", err, stderr.String())
		}
		for _, want := range []string{"Basic Text SR Document", "demo.mgm", "#5"} {
			if !bytes.Contains(stdout.Bytes(), []byte(want)) {
				t.Fatalf("dsrdump output lacks %q:\n%s", want, stdout.String())
			}
		}
	}
}

func TestScanStudies(t *testing.T) {
	root := repoRoot(t)
	shared := filepath.Join(root, "..", "shared", "data", "dicom")
	if _, err := os.Stat(shared); err != nil {
		t.Skip("shared DICOM data not present")
	}
	set, err := ScanStudies([]string{filepath.Join(shared, "cr_chest"), filepath.Join(shared, "ct_series_3slice")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Studies) != 2 || set.Studies[0].Kind != "volume" || set.Studies[1].Kind != "radiograph" {
		t.Fatalf("studies %+v", set.Studies)
	}
	if filepath.Base(set.Studies[1].Frontal) != "RG1_J2KI.dcm" || set.Studies[1].Prior != -1 {
		t.Fatalf("radiograph %+v", set.Studies[1])
	}
	ct := 0
	for _, se := range set.Studies[0].Series {
		if se.Modality == "CT" {
			ct = len(se.Files)
		}
	}
	if ct != 3 || len(set.Warnings) == 0 {
		t.Fatalf("CT files %d, warnings %v", ct, set.Warnings)
	}
	if _, err := ScanStudies([]string{filepath.Join(t.TempDir(), "missing")}, 0); !errors.Is(err, ErrIO) {
		t.Fatalf("missing folder: %v", err)
	}
}
