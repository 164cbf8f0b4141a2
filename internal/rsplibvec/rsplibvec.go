// Package rsplibvec loads the RSPLIB 3.4 message vectors of the shared
// test data (../shared/testdata/rsplib-3.4/vectors, beside the
// repository) for seeding fuzz targets.
//
// # Usage
//
//	for _, v := range rsplibvec.Load(f) { f.Add(v.Data) }
//
// # Limitations
//
// Without the shared test data Load returns nothing and says so in the
// test log; fuzzing then starts from the target's own seeds.
package rsplibvec

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/rserpool/rserpool/wire"
)

// Vector is one captured message.
type Vector struct {
	Name     string // file name without .hex
	Protocol wire.Protocol
	Data     []byte
}

// Dir returns the vector directory.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "testdata", "rsplib-3.4", "vectors")
}

// Load returns every vector, sorted by name, or none (logged) when the
// directory is missing.
func Load(tb testing.TB) []Vector {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(Dir(), "*.hex"))
	if err != nil || len(files) == 0 {
		tb.Logf("no RSPLIB vectors at %s (%v): seeding without them", Dir(), err)
		return nil
	}
	slices.Sort(files)
	var out []Vector
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		data, err := hex.DecodeString(strings.Join(strings.Fields(string(b)), ""))
		if err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".hex")
		p := wire.ASAP
		if strings.HasPrefix(name, "enrp-") {
			p = wire.ENRP
		}
		out = append(out, Vector{Name: name, Protocol: p, Data: data})
	}
	return out
}
