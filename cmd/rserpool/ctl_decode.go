package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strings"

	"github.com/rserpool/rserpool/wire"
)

func init() {
	registerCtl(command{
		name:    "decode",
		summary: "decode a hex or binary ASAP/ENRP message",
		run: func(args []string) int {
			return runDecode(args, os.Stdin, os.Stdout, os.Stderr)
		},
	})
}

// maxDecodeInput bounds what decode reads: a message is at most 65535
// bytes, its hex form with comments a few times that.
const maxDecodeInput = 1 << 20

func runDecode(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ctl decode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	proto := fs.String("proto", "asap", "message protocol: asap or enrp (their type numbers overlap)")
	asJSON := fs.Bool("json", false, "print JSON instead of a tree")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: rserpool ctl decode [-proto asap|enrp] [-json] [FILE|-]")
		fmt.Fprintln(stderr, "FILE holds one message as hex (whitespace, 0x prefixes and # comments allowed) or raw bytes; - or none reads stdin.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var p wire.Protocol
	switch strings.ToLower(*proto) {
	case "asap":
		p = wire.ASAP
	case "enrp":
		p = wire.ENRP
	default:
		fmt.Fprintf(stderr, "rserpool ctl decode: -proto must be asap or enrp, not %q\n", *proto)
		return 2
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	in := stdin
	name := "stdin"
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		name = fs.Arg(0)
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "rserpool ctl decode: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	raw, err := io.ReadAll(io.LimitReader(in, maxDecodeInput+1))
	if err != nil {
		fmt.Fprintf(stderr, "rserpool ctl decode: %s: %v\n", name, err)
		return 1
	}
	if len(raw) > maxDecodeInput {
		fmt.Fprintf(stderr, "rserpool ctl decode: %s: more than %d bytes\n", name, maxDecodeInput)
		return 1
	}
	msg, err := decodeInput(raw)
	if err != nil {
		fmt.Fprintf(stderr, "rserpool ctl decode: %s: %v\n", name, err)
		return 1
	}
	m, err := wire.Parse(p, msg)
	if err != nil {
		var pe *wire.ParseError
		if errors.As(err, &pe) {
			fmt.Fprintf(stderr, "rserpool ctl decode: %s: %s message invalid at offset %d: %v (type 0x%04x)\n",
				name, p, pe.Offset, pe.Err, pe.Type)
		} else {
			fmt.Fprintf(stderr, "rserpool ctl decode: %s: %v\n", name, err)
		}
		return 1
	}
	if *asJSON {
		out := struct {
			Protocol string       `json:"protocol"`
			Type     uint8        `json:"type"`
			Name     string       `json:"name"`
			Flags    uint8        `json:"flags"`
			Length   int          `json:"length"`
			Message  wire.Message `json:"message"`
		}{p.String(), m.Type(), wire.MessageName(m), msg[1], int(msg[2])<<8 | int(msg[3]), m}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "rserpool ctl decode: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stdout, "%s (type 0x%02x, flags 0x%02x, length %d)\n",
		wire.MessageName(m), m.Type(), msg[1], int(msg[2])<<8|int(msg[3]))
	printTree(stdout, "  ", reflect.ValueOf(m).Elem())
	return 0
}

// decodeInput returns the message bytes: hex text if the input (without
// '#' comments) is only hex digits, whitespace, "0x" prefixes, ',' and ':',
// otherwise the raw bytes.
func decodeInput(in []byte) ([]byte, error) {
	var digits []byte
	for _, line := range bytes.Split(in, []byte("\n")) {
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, f := range bytes.FieldsFunc(line, func(r rune) bool {
			return r == ' ' || r == '\t' || r == '\r' || r == '\v' || r == '\f' || r == ',' || r == ':'
		}) {
			f = bytes.TrimPrefix(bytes.TrimPrefix(f, []byte("0x")), []byte("0X"))
			for _, c := range f {
				if !isHexDigit(c) {
					return in, nil // binary
				}
			}
			digits = append(digits, f...)
		}
	}
	if len(digits) == 0 {
		return nil, errors.New("no message in input")
	}
	if len(digits)%2 != 0 {
		return nil, fmt.Errorf("odd number of hex digits (%d)", len(digits))
	}
	out := make([]byte, len(digits)/2)
	if _, err := hex.Decode(out, digits); err != nil {
		return nil, err
	}
	return out, nil
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

var (
	addrType     = reflect.TypeFor[netip.Addr]()
	stringerType = reflect.TypeFor[fmt.Stringer]()
	unrecType    = reflect.TypeFor[wire.Unrecognized]()
)

// printTree prints the fields of struct v, one per line, nested values
// indented. Absent optional values (nil pointers and slices, a Transport of
// type 0) are left out.
func printTree(w io.Writer, indent string, v reflect.Value) {
	t := v.Type()
	show := func(string) bool { return true }
	switch x := v.Interface().(type) {
	case wire.Policy:
		onWire := map[string]bool{"Type": true, "Raw": true}
		for _, n := range x.Type.Fields() {
			onWire[n] = true
		}
		show = func(n string) bool { return onWire[n] }
	case wire.Transport:
		show = func(n string) bool {
			switch n {
			case "Use":
				return x.Type == wire.TransportSCTP || x.Type == wire.TransportTCP
			case "ServiceCode":
				return x.Type == wire.TransportDCCP
			case "Port":
				return x.Type != wire.TransportOpaque
			}
			return true
		}
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		fv := v.Field(i)
		if !show(f.Name) {
			continue
		}
		if f.Type == unrecType {
			list := fv.Field(0)
			if list.Len() > 0 {
				printValue(w, indent, "Unrecognized", list)
			}
			continue
		}
		printValue(w, indent, f.Name, fv)
	}
}

func printValue(w io.Writer, indent, name string, v reflect.Value) {
	switch {
	case v.Type() == addrType:
		fmt.Fprintf(w, "%s%s: %s\n", indent, name, v.Interface())
		return
	case v.Kind() == reflect.Pointer:
		if !v.IsNil() {
			printValue(w, indent, name, v.Elem())
		}
		return
	case v.Type() == reflect.TypeFor[wire.Transport]() && v.Field(0).Uint() == 0:
		return
	case v.Type() == reflect.TypeFor[wire.PoolHandle]():
		fmt.Fprintf(w, "%s%s: %q (%d bytes)\n", indent, name, v.Interface(), v.Len())
		return
	case v.Type().Implements(stringerType) && v.Kind() != reflect.Struct:
		fmt.Fprintf(w, "%s%s: %s (0x%x)\n", indent, name, v.Interface(), v.Uint())
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		fmt.Fprintf(w, "%s%s:\n", indent, name)
		printTree(w, indent+"  ", v)
	case reflect.Slice:
		if v.IsNil() {
			return
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			fmt.Fprintf(w, "%s%s: %d bytes %x\n", indent, name, v.Len(), v.Bytes())
			return
		}
		if v.Type().Elem() == addrType {
			addrs := make([]string, v.Len())
			for i := range addrs {
				addrs[i] = v.Index(i).Interface().(netip.Addr).String()
			}
			fmt.Fprintf(w, "%s%s: %s\n", indent, name, strings.Join(addrs, ", "))
			return
		}
		for i := 0; i < v.Len(); i++ {
			printValue(w, indent, fmt.Sprintf("%s[%d]", name, i), v.Index(i))
		}
	case reflect.String:
		fmt.Fprintf(w, "%s%s: %q\n", indent, name, v.String())
	case reflect.Bool:
		fmt.Fprintf(w, "%s%s: %t\n", indent, name, v.Bool())
	case reflect.Uint32:
		fmt.Fprintf(w, "%s%s: %d (0x%08x)\n", indent, name, v.Uint(), v.Uint())
	case reflect.Uint16, reflect.Uint8:
		if name == "Port" {
			fmt.Fprintf(w, "%s%s: %d\n", indent, name, v.Uint())
			return
		}
		fmt.Fprintf(w, "%s%s: %d (0x%x)\n", indent, name, v.Uint(), v.Uint())
	default:
		fmt.Fprintf(w, "%s%s: %v\n", indent, name, v.Interface())
	}
}
