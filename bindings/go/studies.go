package medgemini

/*
#include <stdint.h>
#include <stdlib.h>
#include "medgemini.h"
*/
import "C"

import (
	"math"
	"strconv"
	"strings"
	"unsafe"
)

// Series is one series of a Study.
type Series struct {
	UID, Modality, Description, Number, BodyPart string
	View                                         string   // "frontal", "lateral" or ""
	Files                                        []string // in instance order
}

// Study is one study of a StudySet.
type Study struct {
	UID, PatientID, PatientName, Date, Time, Accession, Description string
	Kind                                                            string // "volume", "radiograph" or "other"
	Frontal, Lateral                                                string // chest view paths, or ""
	Prior                                                           int    // index of the patient's prior study, or -1
	Series                                                          []Series
}

// StudySet is what ScanStudies found: studies, and the files it skipped.
type StudySet struct {
	Studies  []Study
	Warnings []string
}

// ScanStudies reads folders (recursively), DICOMDIR files or DICOM files
// and groups them into studies and series (mg_studies_scan): each study's
// kind, chest views and prior, each series' files in instance order.
// maxFiles 0 takes the library's default.
func ScanStudies(paths []string, maxFiles int) (*StudySet, error) {
	if len(paths) == 0 {
		return nil, argError("ScanStudies: no paths")
	}
	if maxFiles < 0 || maxFiles > math.MaxUint32 {
		return nil, argError("ScanStudies: maxFiles %d out of range", maxFiles)
	}
	cp, freeCp := cStrings(paths)
	defer freeCp()
	var p C.mg_studies_params
	C.mg_studies_params_init(&p)
	p.max_files = C.uint32_t(maxFiles)
	eb := newErrbuf()
	defer eb.free()
	var h *C.mg_studies
	if err := eb.err(C.mg_studies_scan(&h, cp, C.size_t(len(paths)), &p, eb.p, eb.n)); err != nil {
		return nil, err
	}
	defer C.mg_studies_free(h)
	get := func(i C.size_t, k int64, key string) string {
		ck := C.CString(key)
		defer C.free(unsafe.Pointer(ck))
		v := C.mg_studies_get(h, i, C.int64_t(k), ck)
		if v == nil {
			return ""
		}
		return C.GoString(v)
	}
	set := &StudySet{}
	n := C.mg_studies_count(h)
	for i := C.size_t(0); i < n; i++ {
		s := Study{UID: get(i, -1, "study_uid"), PatientID: get(i, -1, "patient_id"),
			PatientName: get(i, -1, "patient_name"), Date: get(i, -1, "date"), Time: get(i, -1, "time"),
			Accession: get(i, -1, "accession"), Description: get(i, -1, "description"),
			Kind: get(i, -1, "kind"), Frontal: get(i, -1, "frontal"), Lateral: get(i, -1, "lateral"), Prior: -1}
		if v := get(i, -1, "prior"); v != "" {
			if k, err := strconv.Atoi(v); err == nil {
				s.Prior = k
			}
		}
		for k := int64(0); k < int64(C.mg_studies_series_count(h, i)); k++ {
			se := Series{UID: get(i, k, "series_uid"), Modality: get(i, k, "modality"),
				Description: get(i, k, "description"), Number: get(i, k, "number"),
				BodyPart: get(i, k, "body_part"), View: get(i, k, "view")}
			if f := get(i, k, "files"); f != "" {
				se.Files = strings.Split(f, "\n")
			}
			s.Series = append(s.Series, se)
		}
		set.Studies = append(set.Studies, s)
	}
	for _, w := range strings.Split(get(C.size_t(math.MaxUint64), -1, "warnings"), "\n") {
		if w != "" {
			set.Warnings = append(set.Warnings, w)
		}
	}
	return set, nil
}
