package wire

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// PoolHandle is a pool's name: an arbitrary byte vector (RFC 5351 §2.1,
// RFC 5354 §3.9). It is held in a Go string so that it is comparable and
// usable as a map key, but it need not be UTF-8 and may hold any byte,
// NUL included.
//
// A PoolHandle becomes text only through its escaped form (String,
// MarshalText, and fmt's %s, %v and %q): every valid UTF-8 rune that
// strconv.IsPrint accepts, other than the backslash and the double quote,
// stands for itself; a backslash is written `\\`; every other byte (the
// double quote, invalid UTF-8, control characters, non-printable runes such
// as U+00A0 or U+202E) is written `\xHH` with two lower-case hex digits,
// one escape per byte. The form is reversible (ParsePoolHandle), always
// valid and printable UTF-8, and never holds a double quote, so it is safe
// as a Prometheus label value, a log attribute, a JSON string, a line of
// terminal output, and inside double quotes (%q prints "EchoPool", not Go
// quoting). Handles made of printable text look as they are: EchoPool is
// EchoPool. %x and %X print the raw bytes in hex.
type PoolHandle string

// String returns the escaped form of h (see PoolHandle).
func (h PoolHandle) String() string {
	if !needsEscape(h) {
		return string(h)
	}
	return string(h.AppendText(make([]byte, 0, len(h)+8)))
}

// AppendText appends the escaped form of h to b (encoding.TextAppender).
func (h PoolHandle) AppendText(b []byte) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(h); {
		r, n := utf8.DecodeRuneInString(string(h[i:]))
		switch {
		case r == '\\':
			b = append(b, '\\', '\\')
		case r == '"', r == utf8.RuneError && n <= 1, !strconv.IsPrint(r):
			for _, c := range []byte(h[i : i+max(n, 1)]) {
				b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
			}
		default:
			b = append(b, h[i:i+n]...)
		}
		i += max(n, 1)
	}
	return b
}

// Format implements fmt.Formatter: %s and %v print the escaped form, %q
// the escaped form in double quotes, %x and %X the raw bytes in hex.
func (h PoolHandle) Format(f fmt.State, verb rune) {
	switch verb {
	case 's', 'v':
		f.Write([]byte(h.String()))
	case 'q':
		f.Write(h.AppendText(append(make([]byte, 0, len(h)+10), '"')))
		f.Write([]byte{'"'})
	case 'x', 'X':
		fmt.Fprintf(f, fmt.FormatString(f, verb), string(h))
	default:
		fmt.Fprintf(f, "%%!%c(wire.PoolHandle=%s)", verb, h.String())
	}
}

// MarshalText returns the escaped form (encoding.TextMarshaler): JSON,
// TOML and log handlers that honour it show the same text as String.
func (h PoolHandle) MarshalText() ([]byte, error) {
	return h.AppendText(make([]byte, 0, len(h)+8)), nil
}

// UnmarshalText parses the escaped form (encoding.TextUnmarshaler), so that
// a handle in a config file or a JSON document is written as String shows
// it.
func (h *PoolHandle) UnmarshalText(text []byte) error {
	p, err := ParsePoolHandle(string(text))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// needsEscape reports whether h differs from its escaped form.
func needsEscape(h PoolHandle) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c < 0x20 || c >= 0x7f || c == '\\' || c == '"' {
			return needsEscapeSlow(h[i:])
		}
	}
	return false
}

func needsEscapeSlow(h PoolHandle) bool {
	for i := 0; i < len(h); {
		r, n := utf8.DecodeRuneInString(string(h[i:]))
		if r == '\\' || r == '"' || (r == utf8.RuneError && n <= 1) || !strconv.IsPrint(r) {
			return true
		}
		i += n
	}
	return false
}

// ErrHandleEscape is returned by ParsePoolHandle for a backslash that does
// not start `\\` or `\xHH`.
var ErrHandleEscape = errors.New(`wire: bad escape in pool handle (want \\ or \xHH)`)

// ParsePoolHandle reverses String: `\\` is a backslash, `\xHH` the byte
// 0xHH, and every other character stands for its UTF-8 bytes. For every
// handle h, ParsePoolHandle(h.String()) returns h. It checks only the
// escapes; lengths are the caller's rule (ValidatePoolHandle).
func ParsePoolHandle(s string) (PoolHandle, error) {
	i := 0
	for i < len(s) && s[i] != '\\' {
		i++
	}
	if i == len(s) {
		return PoolHandle(s), nil
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for i < len(s) {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			i++
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '\\':
			b = append(b, '\\')
			i += 2
		case i+3 < len(s) && s[i+1] == 'x' && isHex(s[i+2]) && isHex(s[i+3]):
			b = append(b, unhex(s[i+2])<<4|unhex(s[i+3]))
			i += 4
		default:
			return "", &HandleEscapeError{Offset: i, Text: s}
		}
	}
	return PoolHandle(b), nil
}

// HandleEscapeError locates a bad escape in a pool handle's text form.
type HandleEscapeError struct {
	Offset int    // byte offset of the backslash
	Text   string // the whole text
}

func (e *HandleEscapeError) Error() string {
	return ErrHandleEscape.Error() + " at byte " + strconv.Itoa(e.Offset) + " of " + strconv.Quote(e.Text)
}

// Unwrap returns ErrHandleEscape.
func (e *HandleEscapeError) Unwrap() error { return ErrHandleEscape }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
