package config

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// settingFlag is the flag of one setting: it keeps what the command line gave (the
// setting is parsed later, after the file and the environment) and knows the
// setting's default and type, for -h.
type settingFlag struct {
	raw  *string
	def  string
	kind string
}

func (f *settingFlag) String() string {
	switch {
	case f == nil:
		return ""
	case f.raw != nil && *f.raw != "":
		return *f.raw
	}
	return f.def
}

func (f *settingFlag) Set(x string) error { *f.raw = x; return nil }

// kindAndDefault returns the type word -h shows for s (string, int, duration, bool)
// and its default as text ("" when the default is the zero value).
func (s setting) kindAndDefault() (kind, def string) {
	switch v := s.field.Interface().(type) {
	case string:
		return "string", v
	case bool:
		if v {
			return "bool", "true"
		}
		return "bool", ""
	case int:
		if v == 0 {
			return "int", ""
		}
		return "int", strconv.Itoa(v)
	case time.Duration:
		if v == 0 {
			return "duration", ""
		}
		return "duration", v.String()
	}
	return "value", ""
}

// printUsage writes every flag of fs with its type and default, like
// flag.PrintDefaults but with the settings' own types (a setting's flag keeps its
// raw text until the configuration is assembled, so the flag package cannot see it).
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage of tokenizer %s:\n", fs.Name())
	fs.VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		def := f.DefValue
		if sf, ok := f.Value.(*settingFlag); ok {
			kind, def = sf.kind, sf.def
		}
		if _, ok := f.Value.(*boolValue); ok {
			kind = "" // a boolean flag stands alone, as in the flag package
		}
		var b strings.Builder
		fmt.Fprintf(&b, "  -%s", f.Name)
		if kind != "" {
			fmt.Fprintf(&b, " %s", kind)
		}
		b.WriteString("\n    \t")
		b.WriteString(strings.ReplaceAll(usage, "\n", "\n    \t"))
		switch {
		case def == "" || (kind == "" && def == "false") || (kind == "int" && def == "0"):
		case kind == "string":
			fmt.Fprintf(&b, " (default %q)", def)
		default:
			fmt.Fprintf(&b, " (default %s)", def)
		}
		fmt.Fprintln(w, b.String())
	})
}
