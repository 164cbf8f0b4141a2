package confdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
)

// conf is a small configuration of the shape the daemons use.
type conf struct {
	Registrars []string   `toml:"registrars"`
	Admin      string     `toml:"admin"`
	Limits     limits     `toml:"limits"`
	Listeners  []listener `toml:"listener"`
}

type limits struct {
	MaxPools    int `toml:"max_pools"`
	MaxElements int `toml:"max_elements"`
}

type listener struct {
	Listen string `toml:"listen"`
	Pool   string `toml:"pool"`
	Health struct {
		Interval string `toml:"interval"`
	} `toml:"health"`
}

// strict decodes b into conf and fails on unknown keys, as the daemons do.
func strict(b []byte) (conf, error) {
	var c conf
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		return c, err
	}
	if u := md.Undecoded(); len(u) > 0 {
		return c, fmt.Errorf("unknown keys: %v", u)
	}
	return c, nil
}

func decodeOnly(b []byte) error { _, err := strict(b); return err }

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFileIsReadAsIs(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.toml": "# comment\nadmin = \"x\"\n"})
	s, err := Read(filepath.Join(dir, "a.toml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.IsDir() || string(s.Data) != "# comment\nadmin = \"x\"\n" {
		t.Fatalf("source = %+v", s)
	}
	err = s.Annotate(errors.Join(errors.New("admin: bad"), errors.New("limits.max_pools: bad")))
	want := s.Path + ": admin: bad\n" + s.Path + ": limits.max_pools: bad"
	if err == nil || err.Error() != want {
		t.Fatalf("Annotate = %v, want %q", err, want)
	}
}

func TestDirectoryMerges(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"00-main.toml":   "registrars = [\"tcp://127.0.0.1:3863\"]\n[limits]\nmax_pools = 5\n",
		"10-limits.toml": "[limits]\nmax_elements = 7\n",
		"20-web.toml":    "[[listener]]\nlisten = \"127.0.0.1:80\"\npool = 'W\\x00eb'\n[listener.health]\ninterval = \"1s\"\n",
		"30-mail.toml":   "[[listener]]\nlisten = \"127.0.0.1:25\"\npool = \"Mail\"\n[[listener]]\nlisten = \"127.0.0.1:587\"\npool = \"Mail\"\n",
		"notes.txt":      "not toml = [",
		".hidden.toml":   "not toml = [",
		"sub/x.toml":     "not toml = [",
		"99-old.toml~":   "not toml = [",
	})
	s, err := Read(dir, decodeOnly)
	if err != nil {
		t.Fatal(err)
	}
	if !s.IsDir() || len(s.Files) != 4 || filepath.Base(s.Files[0]) != "00-main.toml" {
		t.Fatalf("files = %v", s.Files)
	}
	got, err := strict(s.Data)
	if err != nil {
		t.Fatalf("merged text does not decode: %v\n%s", err, s.Data)
	}
	want := conf{
		Registrars: []string{"tcp://127.0.0.1:3863"},
		Limits:     limits{MaxPools: 5, MaxElements: 7},
		Listeners: []listener{
			{Listen: "127.0.0.1:80", Pool: "W\\x00eb"},
			{Listen: "127.0.0.1:25", Pool: "Mail"},
			{Listen: "127.0.0.1:587", Pool: "Mail"},
		},
	}
	want.Listeners[0].Health.Interval = "1s"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("merged config (-want +got):\n%s", diff)
	}
}

func TestKeyDefinedTwiceNamesBothFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		key   string
	}{
		{"value", map[string]string{"a.toml": "admin = \"x\"\n", "b.toml": "admin = \"y\"\n"}, "admin"},
		{"same value", map[string]string{"a.toml": "admin = \"x\"\n", "b.toml": "admin = \"x\"\n"}, "admin"},
		{"in a table", map[string]string{"a.toml": "[limits]\nmax_pools = 1\n", "b.toml": "[limits]\nmax_pools = 2\n"}, "limits.max_pools"},
		{"dotted key against a table", map[string]string{"a.toml": "limits.max_pools = 1\n", "b.toml": "[limits]\nmax_pools = 2\n"}, "limits.max_pools"},
		{"inline array", map[string]string{"a.toml": "registrars = [\"a\"]\n", "b.toml": "registrars = [\"b\"]\n"}, "registrars"},
		{"empty arrays", map[string]string{"a.toml": "registrars = []\n", "b.toml": "registrars = []\n"}, "registrars"},
		{"table against a value", map[string]string{"a.toml": "[limits]\nmax_pools = 1\n", "b.toml": "limits = 3\n"}, "limits"},
		{"array of tables against a value", map[string]string{"a.toml": "[[listener]]\npool = \"P\"\n", "b.toml": "listener = 1\n"}, "listener"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			_, err := Read(dir, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range []string{"key " + tc.key + " ", filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.toml")} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestBadFilesAreNamed(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.toml": "admin = \"x\"\n",
		"b.toml": "admin = \n",                          // syntax
		"c.toml": "[limits]\nmax_pool = 3\n",            // unknown key (decode)
		"d.toml": "[[listener]]\nlisten = 3\n",          // wrong type (decode)
		"e.toml": "[limits]\nmax_elements = \"many\"\n", // wrong type
	})
	_, err := Read(dir, decodeOnly)
	if err == nil {
		t.Fatal("no error")
	}
	for _, f := range []string{"b.toml", "c.toml", "d.toml", "e.toml"} {
		if !strings.Contains(err.Error(), filepath.Join(dir, f)+": ") {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
	if strings.Contains(err.Error(), filepath.Join(dir, "a.toml")) {
		t.Errorf("error %q names the good file", err)
	}
	if !strings.Contains(err.Error(), "max_pool") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error %q lacks the unknown key or the line", err)
	}
}

func TestDirectoryBounds(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"README": "x"})
		if _, err := Read(dir, nil); err == nil || !strings.Contains(err.Error(), "no *.toml") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := Read(filepath.Join(t.TempDir(), "nope"), nil); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("large file", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"a.toml": "admin = \"" + strings.Repeat("x", MaxFileSize) + "\"\n"})
		if _, err := Read(dir, nil); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("err = %v", err)
		}
		if _, err := Read(filepath.Join(dir, "a.toml"), nil); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"a.toml": "admin = \"x\"\n"})
		if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "b.toml")); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(dir, nil); err == nil || !strings.Contains(err.Error(), "b.toml") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestAnnotateMapsKeysToFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.toml": "registrars = [\"x\"]\n[limits]\nmax_pools = 0\n[[listener]]\npool = \"A\"\n",
		"b.toml": "[[listener]]\npool = \"B0\"\n[[listener]]\npool = \"B1\"\n",
	})
	s, err := Read(dir, decodeOnly)
	if err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.toml")
	sentinel := errors.New("must be at least 1")
	in := errors.Join(
		fmt.Errorf("limits.max_pools: %w", sentinel),
		errors.New("listener[2].listen: required"),
		errors.New("listener[0]: pool \"A\" repeats listener[1]"),
		errors.New("registrars[0]: empty address"),
		errors.New("admin: bad"),
		errors.New("at least one thing"),
	)
	got := s.Annotate(in)
	want := strings.Join([]string{
		a + ": limits.max_pools: must be at least 1",
		b + ": listener[1].listen: required",
		a + ": listener[0]: pool \"A\" repeats listener[0] of " + b,
		a + ": registrars[0]: empty address",
		dir + ": admin: bad",
		dir + ": at least one thing",
	}, "\n")
	if got.Error() != want {
		t.Fatalf("Annotate:\n%s\nwant:\n%s", got, want)
	}
	if !errors.Is(got, sentinel) {
		t.Fatal("annotated error does not unwrap to the original")
	}
	if s.Annotate(nil) != nil {
		t.Fatal("Annotate(nil) != nil")
	}
}

func TestOnly(t *testing.T) {
	in := errors.Join(errors.New("registrars: required"), errors.New("element[1].pool: required"),
		errors.New("elements: x"), errors.New("listener[0]: y"))
	got := Only(in, "element", "listener")
	if got == nil || got.Error() != "element[1].pool: required\nlistener[0]: y" {
		t.Fatalf("Only = %v", got)
	}
	if Only(errors.New("registrars: required"), "element") != nil || Only(nil, "element") != nil {
		t.Fatal("Only kept an unrelated error")
	}
}
