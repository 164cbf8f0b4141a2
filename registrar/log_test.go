package registrar

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLogMessagesAreConstant: the registrar's log calls pass a constant
// message text (variable data goes in attributes), so that the daemons'
// log handler, which passes each (level, message) once a second, limits
// every one of them in a flood. A call whose message is a variable must be
// in one of the allowed helpers, whose callers pass literals.
func TestLogMessagesAreConstant(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	levels := map[string]bool{"Debug": true, "Info": true, "Warn": true, "Error": true}
	// helper name -> index of its message argument
	helpers := map[string]int{"logLimited": 1, "refuse": 2}
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			_, inHelper := helpers[fn.Name.Name]
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				arg := -1
				if levels[sel.Sel.Name] && isLogger(sel.X) {
					arg = 0
				} else if i, ok := helpers[sel.Sel.Name]; ok {
					arg = i
				}
				if arg < 0 || arg >= len(call.Args) {
					return true
				}
				checked++
				switch m := call.Args[arg].(type) {
				case *ast.BasicLit:
					if _, err := strconv.Unquote(m.Value); err != nil {
						t.Errorf("%s: message is not a string", fset.Position(m.Pos()))
					}
				case *ast.Ident:
					if !inHelper && !constantChoice(fn, m.Name) {
						t.Errorf("%s: log message is the variable %s", fset.Position(m.Pos()), m.Name)
					}
				default:
					t.Errorf("%s: log message is not a literal", fset.Position(call.Args[arg].Pos()))
				}
				return true
			})
		}
	}
	if checked < 30 {
		t.Fatalf("only %d log calls found; is the test looking at the right files?", checked)
	}
}

// isLogger reports whether x names a *slog.Logger the registrar's way:
// log, l (in helpers), or a log field.
func isLogger(x ast.Expr) bool {
	switch x := x.(type) {
	case *ast.Ident:
		return x.Name == "log" || x.Name == "l"
	case *ast.SelectorExpr:
		return x.Sel.Name == "log"
	}
	return false
}

// constantChoice reports whether every assignment to name in fn is a
// string literal (a message picked from a fixed set).
func constantChoice(fn *ast.FuncDecl, name string) bool {
	ok, seen := true, false
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		as, isAssign := n.(*ast.AssignStmt)
		if !isAssign {
			return true
		}
		for i, l := range as.Lhs {
			if id, isIdent := l.(*ast.Ident); isIdent && id.Name == name && i < len(as.Rhs) {
				seen = true
				if _, lit := as.Rhs[i].(*ast.BasicLit); !lit {
					ok = false
				}
			}
		}
		return true
	})
	return ok && seen
}
