// Package lint holds source checks of the whole module that go vet does not make.
package lint

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// No shell anywhere: no code path of vpcnat builds a command line for a shell to parse, where a
// value from a CR, an annotation or a CNI config ("eth1; reboot") would become a command. Every
// program is run with an argv. The check parses every non-test .go file of the module (go/ast,
// not a grep: comments, strings in other roles and names that merely contain "sh" are not
// findings) and reports:
//   - a process started (os/exec Command, CommandContext or an exec.Cmd literal's Path; os,
//     syscall or x/sys/unix StartProcess, ForkExec, Exec) whose program or any constant argument
//     is a shell (sh, bash, dash, zsh, ksh, ash, mksh, csh, tcsh, fish, busybox; by name or
//     path): this also catches a shell behind a wrapper such as env, nsenter or ip netns exec;
//   - a "-c" argument given to a program that is not a constant (a shell in a variable), and
//     os.Getenv("SHELL") as the program;
//   - an absolute shell path ("/bin/sh") written anywhere in the code.
// Constants are followed through the package's own const declarations.

var shells = map[string]bool{"sh": true, "bash": true, "dash": true, "zsh": true, "ksh": true, "ash": true,
	"mksh": true, "csh": true, "tcsh": true, "fish": true, "busybox": true}

// isShell reports whether s names a shell, as a bare name or a path.
func isShell(s string) bool { return shells[path.Base(s)] }

// isShellPath reports whether s is an absolute path of a shell.
func isShellPath(s string) bool { return strings.HasPrefix(s, "/") && isShell(s) }

// finding is one violation, "file:line: message".
type finding struct {
	pos token.Position
	msg string
}

func (f finding) String() string { return fmt.Sprintf("%s:%d: %s", f.pos.Filename, f.pos.Line, f.msg) }

// execFuncs are the functions that start a program, by import path, with the index of the
// argument naming the program and the index where its arguments start (-1: a slice argument).
var execFuncs = map[string]map[string][2]int{
	"os/exec":               {"Command": {0, 1}, "CommandContext": {1, 2}},
	"os":                    {"StartProcess": {0, -1}},
	"syscall":               {"Exec": {0, -1}, "ForkExec": {0, -1}, "StartProcess": {0, -1}},
	"golang.org/x/sys/unix": {"Exec": {0, -1}},
}

// checkDir parses the non-test .go files under root (skipping testdata, vendor and hidden
// directories, except that root itself may be a testdata directory) and returns the findings
// and the number of files read.
func checkDir(root string) ([]finding, int, error) {
	var findings []finding
	files := 0
	fset := token.NewFileSet()
	pkgs := map[string][]*ast.File{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("parsing %s: %w", p, err)
		}
		files++
		dir := filepath.Dir(p)
		pkgs[dir] = append(pkgs[dir], f)
		return nil
	})
	if err != nil {
		return nil, files, err
	}
	dirs := make([]string, 0, len(pkgs))
	for d := range pkgs {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs)
	for _, d := range dirs {
		findings = append(findings, checkPackage(fset, pkgs[d])...)
	}
	return findings, files, nil
}

// checkPackage checks the files of one directory (one package, for its constants).
func checkPackage(fset *token.FileSet, files []*ast.File) []finding {
	consts := map[string]string{}
	for _, f := range files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if s, ok := stringLit(vs.Values[i]); ok {
							consts[name.Name] = s
						}
					}
				}
			}
		}
	}
	var out []finding
	for _, f := range files {
		out = append(out, checkFile(fset, f, consts)...)
	}
	return out
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// constString is the value of a string literal, a package constant or a concatenation of them.
func constString(e ast.Expr, consts map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		return stringLit(e)
	case *ast.Ident:
		s, ok := consts[e.Name]
		return s, ok
	case *ast.ParenExpr:
		return constString(e.X, consts)
	case *ast.BinaryExpr:
		if e.Op == token.ADD {
			a, ok1 := constString(e.X, consts)
			b, ok2 := constString(e.Y, consts)
			return a + b, ok1 && ok2
		}
	}
	return "", false
}

func checkFile(fset *token.FileSet, f *ast.File, consts map[string]string) []finding {
	// Local names of the imports that can start a process.
	local := map[string]string{} // local name -> import path
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if _, ok := execFuncs[p]; !ok {
			continue
		}
		name := path.Base(p)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		local[name] = p
	}
	var out []finding
	report := func(n ast.Node, format string, args ...any) {
		out = append(out, finding{pos: fset.Position(n.Pos()), msg: fmt.Sprintf(format, args...)})
	}
	// checkArgv reports a shell as the program or among the constant arguments, and "-c" given to
	// a program that is not a constant.
	checkArgv := func(call ast.Node, what string, prog ast.Expr, args []ast.Expr) {
		progName, progConst := constString(prog, consts)
		if isGetenvShell(prog, consts) {
			report(call, "%s runs $SHELL: run the program with an argv instead", what)
			return
		}
		if progConst && isShell(progName) {
			report(call, "%s runs the shell %q: run the program with an argv instead", what, progName)
			return
		}
		for _, a := range args {
			s, ok := constString(a, consts)
			if !ok {
				continue
			}
			if isShell(s) {
				report(call, "%s passes the shell %q to %s: run the program with an argv instead", what, s, describe(progName, progConst))
				return
			}
			if s == "-c" && !progConst {
				report(call, "%s passes \"-c\" to a program that is not a constant (a shell?)", what)
				return
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BasicLit:
			if s, ok := stringLit(n); ok && isShellPath(s) {
				report(n, "shell path %q in the code", s)
			}
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			pkg, ok := sel.X.(*ast.Ident)
			if !ok {
				return true
			}
			imp, ok := local[pkg.Name]
			if !ok {
				return true
			}
			idx, ok := execFuncs[imp][sel.Sel.Name]
			if !ok || idx[0] >= len(n.Args) {
				return true
			}
			what := pkg.Name + "." + sel.Sel.Name
			var args []ast.Expr
			if idx[1] >= 0 && idx[1] <= len(n.Args) {
				args = n.Args[idx[1]:]
			} else if idx[1] < 0 && len(n.Args) > 1 {
				// StartProcess/Exec take argv as a []string: look into a literal one.
				if cl, ok := n.Args[1].(*ast.CompositeLit); ok {
					args = cl.Elts
				}
			}
			checkArgv(n, what, n.Args[idx[0]], args)
		case *ast.CompositeLit:
			// exec.Cmd{Path: ..., Args: []string{...}}
			sel, ok := n.Type.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Cmd" {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || local[pkg.Name] != "os/exec" {
				return true
			}
			var prog ast.Expr = &ast.Ident{Name: "_"}
			var args []ast.Expr
			for _, e := range n.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				switch k, _ := kv.Key.(*ast.Ident); {
				case k == nil:
				case k.Name == "Path":
					prog = kv.Value
				case k.Name == "Args":
					if cl, ok := kv.Value.(*ast.CompositeLit); ok {
						args = cl.Elts
					}
				}
			}
			checkArgv(n, "exec.Cmd", prog, args)
		}
		return true
	})
	return out
}

// isGetenvShell reports whether e is os.Getenv("SHELL") (the user's shell, whatever it is).
func isGetenvShell(e ast.Expr, consts map[string]string) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok || len(call.Args) != 1 {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || (sel.Sel.Name != "Getenv" && sel.Sel.Name != "LookupEnv") {
		return false
	}
	v, ok := constString(call.Args[0], consts)
	return ok && v == "SHELL"
}

func describe(name string, isConst bool) string {
	if isConst {
		return strconv.Quote(name)
	}
	return "a program"
}

// moduleRoot is the directory holding go.mod, above this file.
func moduleRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	for dir := filepath.Dir(file); ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if dir == filepath.Dir(dir) {
			t.Fatal("go.mod not found above " + file)
		}
	}
}

// TestNoShell: no non-test .go file of the module starts a shell or passes a shell command line.
func TestNoShell(t *testing.T) {
	root := moduleRoot(t)
	findings, files, err := checkDir(root)
	if err != nil {
		t.Fatal(err)
	}
	// The walk must really have seen the module: every program and package.
	if files < 100 {
		t.Fatalf("only %d non-test .go files found under %s", files, root)
	}
	for _, f := range findings {
		rel, _ := filepath.Rel(root, f.pos.Filename)
		f.pos.Filename = rel
		t.Errorf("%s", f)
	}
	t.Logf("%d non-test .go files checked, %d findings", files, len(findings))
}

// TestNoShellCatchesPlanted: the check finds every planted use in testdata/planted (each marked
// with a "// want" comment on its line) and nothing on the lines without one.
func TestNoShellCatchesPlanted(t *testing.T) {
	dir := filepath.Join("testdata", "planted")
	findings, files, err := checkDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no planted files")
	}
	want := map[string]bool{} // file:line
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "// want") {
				want[fmt.Sprintf("%s:%d", filepath.Join(dir, e.Name()), i+1)] = true
			}
		}
	}
	if len(want) < 8 {
		t.Fatalf("only %d planted cases", len(want))
	}
	got := map[string]bool{}
	for _, f := range findings {
		key := fmt.Sprintf("%s:%d", f.pos.Filename, f.pos.Line)
		got[key] = true
		if !want[key] {
			t.Errorf("false positive: %s", f)
		}
		t.Logf("found %s", f)
	}
	for key := range want {
		if !got[key] {
			t.Errorf("planted use not found: %s", key)
		}
	}
}
