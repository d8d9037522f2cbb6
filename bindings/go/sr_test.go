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
