// Package confdir reads a daemon's TOML configuration from one file or from
// a directory of files, so that operators can keep one file per pool,
// listener or element (as Consul keeps one file per service).
//
// A directory's files are the regular files named *.toml directly in it
// (not in subdirectories; names starting with "." are skipped), read in
// name order and merged:
//
//   - tables ([asap], [limits]) are merged key by key;
//   - arrays of tables ([[pool]], [[listener]], [[element]]) are
//     concatenated in file-name order, so each file can add its own;
//   - any other key (a value, or an inline array) defined in two files is
//     an error naming both files, as is a key that is a table in one file
//     and a value in another.
//
// # Usage
//
//	src, err := confdir.Read(path, decodeStrict) // decodeStrict checks one file on its own
//	cfg, err := parse(src.Data)                  // the file's text, or the merged text
//	err = src.Annotate(cfg.Validate())           // "web.toml: listener[0].pool: required"
//
// # Limitations
//
// The merged text is re-encoded TOML: it holds the same values, not the
// files' comments or layout. Decoding errors are reported per file (the
// caller's decode function runs on each file first); validation errors
// name the merged keys, which Annotate maps back to files. Files are
// bounded (MaxFiles, MaxFileSize) so that a wrong path (a log directory)
// fails clearly instead of eating memory.
package confdir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Bounds of a configuration directory.
const (
	MaxFiles    = 4096
	MaxFileSize = 4 << 20
)

// Source is a configuration read from a file or a directory.
type Source struct {
	// Path is the file or directory given to Read.
	Path string
	// Files are the files read, in merge order (one for a file).
	Files []string
	// Data is the TOML text: the file's own, or the merged text of a
	// directory's files.
	Data []byte

	dir    bool
	leaves map[string]string   // dotted key of a value → file defining it
	arrays map[string][]origin // dotted key of an array of tables → each element's origin
}

// origin is where one element of an array of tables came from.
type origin struct {
	file  string
	index int // index within its file's array
}

// IsDir reports whether the source is a directory.
func (s *Source) IsDir() bool { return s.dir }

// Read reads path: a file as it is, or a directory as described in the
// package documentation. decode, if not nil, is run on each file of a
// directory on its own (a strict decode without validation), so that
// unknown keys and bad values are reported with the file's name and line;
// it is not run for a single file (the caller decodes Data and reports
// errors itself).
func Read(path string, decode func([]byte) error) (*Source, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		b, err := readFile(path)
		if err != nil {
			return nil, err
		}
		return &Source{Path: path, Files: []string{path}, Data: b}, nil
	}
	files, err := list(path)
	if err != nil {
		return nil, err
	}
	s := &Source{Path: path, Files: files, dir: true, leaves: map[string]string{}, arrays: map[string][]origin{}}
	merged := map[string]any{}
	var errs []error
	for _, f := range files {
		b, err := readFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var m map[string]any
		if _, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&m); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		if decode != nil {
			if err := decode(b); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f, err))
				continue
			}
		}
		errs = append(errs, s.merge(merged, m, nil, f)...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(merged); err != nil {
		return nil, fmt.Errorf("%s: merging: %w", path, err)
	}
	s.Data = buf.Bytes()
	return s, nil
}

// list returns the *.toml files of dir in name order.
func list(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".toml") {
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p) // follows symbolic links
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		files = append(files, p)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no *.toml file in the directory", dir)
	}
	if len(files) > MaxFiles {
		return nil, fmt.Errorf("%s: %d *.toml files, at most %d", dir, len(files), MaxFiles)
	}
	sort.Strings(files)
	return files, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxFileSize)
	}
	return b, nil
}

// merge adds src (decoded from file) into dst, under the key path prefix.
func (s *Source) merge(dst, src map[string]any, prefix []string, file string) []error {
	var errs []error
	keys := make([]string, 0, len(src))
	for k := range src {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := src[k]
		path := append(slices.Clip(prefix), k)
		name := dotted(path)
		old, exists := dst[k]
		if !exists {
			dst[k] = v
			s.record(v, path, file)
			continue
		}
		if om, ok := old.(map[string]any); ok {
			if nm, ok := v.(map[string]any); ok {
				errs = append(errs, s.merge(om, nm, path, file)...)
				continue
			}
		}
		if ot, ok := tables(old); ok {
			if nt, ok := tables(v); ok {
				dst[k] = append(ot, nt...)
				for i := range nt {
					s.arrays[name] = append(s.arrays[name], origin{file, i})
				}
				continue
			}
		}
		errs = append(errs, fmt.Errorf("key %s is defined in both %s and %s", name, s.firstFile(path), file))
	}
	return errs
}

// record notes which file defined v at path (every value below a table).
func (s *Source) record(v any, path []string, file string) {
	name := dotted(path)
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			s.record(x, append(slices.Clip(path), k), file)
		}
		return
	}
	if t, ok := tables(v); ok {
		for i := range t {
			s.arrays[name] = append(s.arrays[name], origin{file, i})
		}
		return
	}
	s.leaves[name] = file
}

// firstFile returns the file that defined path (or something below it)
// first, for a conflict message.
func (s *Source) firstFile(path []string) string {
	name := dotted(path)
	if f, ok := s.leaves[name]; ok {
		return f
	}
	if o := s.arrays[name]; len(o) > 0 {
		return o[0].file
	}
	var files []string
	for k, f := range s.leaves {
		if strings.HasPrefix(k, name+".") {
			files = append(files, f)
		}
	}
	for k, o := range s.arrays {
		if strings.HasPrefix(k, name+".") && len(o) > 0 {
			files = append(files, o[0].file)
		}
	}
	if len(files) == 0 {
		return "an earlier file"
	}
	slices.Sort(files)
	return files[0]
}

// tables returns v as an array of tables.
func tables(v any) ([]map[string]any, bool) {
	switch t := v.(type) {
	case []map[string]any:
		return t, true
	case []any:
		if len(t) == 0 {
			return nil, false
		}
		out := make([]map[string]any, len(t))
		for i, x := range t {
			m, ok := x.(map[string]any)
			if !ok {
				return nil, false
			}
			out[i] = m
		}
		return out, true
	}
	return nil, false
}

// dotted joins a key path as TOML writes it.
func dotted(path []string) string { return toml.Key(path).String() }

// keyRE matches the key a validation message starts with: "listener[3].pool",
// "asap.listen[0]", "limits.max_pools".
var keyRE = regexp.MustCompile(`^([A-Za-z0-9_]+(?:\[[0-9]+\])?(?:\.[A-Za-z0-9_]+(?:\[[0-9]+\])?)*)`)

// indexRE matches an element of an array of tables: "listener[3]".
var indexRE = regexp.MustCompile(`([A-Za-z0-9_.]+)\[([0-9]+)\]`)

// Annotate maps the keys that validation messages start with back to the
// files of a directory: "listener[3].pool: required" becomes
// "/etc/x.d/web.toml: listener[0].pool: required" when the fourth
// [[listener]] was the first of web.toml, and "limits.max_pools: ..." is
// prefixed with the file that set it. A message whose key no file set (a
// default, or a rule over several keys) is prefixed with the directory.
// Other array elements a message names ("repeats listener[1]") get their
// file added. Each error of an errors.Join is annotated on its own; nil
// stays nil, and a single file's errors are only prefixed with its name.
func (s *Source) Annotate(err error) error {
	if err == nil {
		return nil
	}
	list := joined(err)
	out := make([]error, 0, len(list))
	for _, e := range list {
		if !s.dir {
			out = append(out, fmt.Errorf("%s: %w", s.Path, e))
			continue
		}
		out = append(out, &annotated{msg: s.annotate(e.Error()), err: e})
	}
	return errors.Join(out...)
}

// annotated is an error with a rewritten message that still unwraps to the
// original (errors.Is keeps working).
type annotated struct {
	msg string
	err error
}

func (a *annotated) Error() string { return a.msg }
func (a *annotated) Unwrap() error { return a.err }

func (s *Source) annotate(msg string) string {
	key := keyRE.FindString(msg)
	file, newKey := "", key
	if m := indexRE.FindStringSubmatchIndex(key); m != nil && m[0] == 0 {
		name := key[m[2]:m[3]]
		n, _ := strconv.Atoi(key[m[4]:m[5]])
		if o := s.arrays[name]; n < len(o) {
			file = o[n].file
			newKey = fmt.Sprintf("%s[%d]%s", name, o[n].index, key[m[1]:])
		}
	}
	if file == "" && key != "" {
		file = s.leaves[indexRE.ReplaceAllString(key, "$1")]
	}
	if file == "" {
		file = s.Path
	}
	// Elements named later in the message ("repeats listener[1]").
	tail := indexRE.ReplaceAllStringFunc(msg[len(key):], func(x string) string {
		m := indexRE.FindStringSubmatch(x)
		n, _ := strconv.Atoi(m[2])
		if o := s.arrays[m[1]]; n < len(o) {
			return fmt.Sprintf("%s[%d] of %s", m[1], o[n].index, o[n].file)
		}
		return x
	})
	return file + ": " + newKey + tail
}

// Only returns the errors of err (one error, or those of an errors.Join)
// whose message starts with an element of one of the named arrays of
// tables ("listener[2].pool: required" for "listener"), or nil if none
// does. A loader whose caller may still complete the configuration (flags
// fill in registrars) checks the elements of a directory's files at once
// with it, and leaves the rest to the caller's validation.
func Only(err error, arrays ...string) error {
	var out []error
	for _, e := range joined(err) {
		msg := e.Error()
		for _, a := range arrays {
			if strings.HasPrefix(msg, a+"[") {
				out = append(out, e)
				break
			}
		}
	}
	return errors.Join(out...)
}

// joined returns the errors of an errors.Join, or err alone (none for nil).
func joined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
