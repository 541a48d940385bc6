package apidoc

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// The API's descriptors, registered in protoregistry.GlobalFiles.
	"github.com/phivault/tokenizer/internal/gateway"
	_ "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// Package is the proto package whose RPCs are documented.
const Package = "tokenizer.v1"

// Route is one REST binding of an RPC: an HTTP method and a path template.
type Route struct {
	Method string // GET, POST, PUT, PATCH, DELETE or a custom verb
	Path   string // e.g. /v1/tokenize:stream
}

func (r Route) String() string { return r.Method + " " + r.Path }

// RPC is one method of a service of Package, with its REST bindings.
type RPC struct {
	// Name is the full method name as grpcurl spells it: tokenizer.v1.Service/Method.
	Name   string
	Routes []Route
}

// RPCs lists every RPC of Package from the registered file descriptors, sorted by name.
func RPCs() []RPC {
	var out []RPC
	protoregistry.GlobalFiles.RangeFilesByPackage(Package, func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				out = append(out, RPC{Name: string(sd.FullName()) + "/" + string(md.Name()), Routes: routesOf(md)})
			}
		}
		return true
	})
	slices.SortFunc(out, func(a, b RPC) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// routesOf reads the google.api.http option of a method, additional bindings included.
func routesOf(md protoreflect.MethodDescriptor) []Route {
	rule, ok := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
	if !ok || rule == nil {
		return nil
	}
	var out []Route
	var add func(r *annotations.HttpRule)
	add = func(r *annotations.HttpRule) {
		switch p := r.GetPattern().(type) {
		case *annotations.HttpRule_Get:
			out = append(out, Route{"GET", p.Get})
		case *annotations.HttpRule_Post:
			out = append(out, Route{"POST", p.Post})
		case *annotations.HttpRule_Put:
			out = append(out, Route{"PUT", p.Put})
		case *annotations.HttpRule_Patch:
			out = append(out, Route{"PATCH", p.Patch})
		case *annotations.HttpRule_Delete:
			out = append(out, Route{"DELETE", p.Delete})
		case *annotations.HttpRule_Custom:
			out = append(out, Route{strings.ToUpper(p.Custom.GetKind()), p.Custom.GetPath()})
		}
		for _, b := range r.GetAdditionalBindings() {
			add(b)
		}
	}
	add(rule)
	return out
}

var (
	// A section per RPC: "### tokenizer.v1.Service/Method".
	sectionRE = regexp.MustCompile(`(?m)^### +(\S+)\s*$`)
	level2RE  = regexp.MustCompile(`(?m)^## `)
	// A route declaration: a line that starts with `METHOD /path`.
	routeRE = regexp.MustCompile("(?m)^`([A-Z]+) (/[^`\\s]*)`")
	// Any path of the API mentioned anywhere (curl examples, prose): /v1/... not
	// preceded by a letter (so proto/tokenizer/v1/... is a file, not a route).
	pathRE = regexp.MustCompile(`(?:^|[^A-Za-z])(/v\d+/[A-Za-z0-9_{}/.*:$-]*[A-Za-z0-9_}*])`)
	// Any RPC named anywhere (grpcurl examples, prose).
	rpcRE = regexp.MustCompile(`\b` + regexp.QuoteMeta(Package) + `\.[A-Za-z]+Service/[A-Za-z]+\b`)
)

// Check compares a reference document with rpcs and returns every discrepancy: an RPC
// without its section, a section without the RPC's routes, a curl example or a grpcurl
// example; a section, route, path or RPC name that the protos do not have.
func Check(doc string, rpcs []RPC) []string {
	var problems []string
	sections := splitSections(doc)
	known := map[string]RPC{}
	for _, r := range rpcs {
		known[r.Name] = r
		body, ok := sections[r.Name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: no section \"### %s\"", r.Name, r.Name))
			continue
		}
		problems = append(problems, checkSection(r, body)...)
	}
	for name := range sections {
		if _, ok := known[name]; !ok && strings.HasPrefix(name, Package+".") {
			problems = append(problems, fmt.Sprintf("section %q documents an RPC the protos do not have", name))
		}
	}
	problems = append(problems, checkMentions(doc, rpcs)...)
	slices.Sort(problems)
	return slices.Compact(problems)
}

// splitSections maps each "### name" heading to the text up to the next heading of
// level 2 or 3 (a "# " line is a comment in the shell examples, not a heading).
func splitSections(doc string) map[string]string {
	out := map[string]string{}
	locs := sectionRE.FindAllStringSubmatchIndex(doc, -1)
	for i, l := range locs {
		end := len(doc)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		if next := level2RE.FindStringIndex(doc[l[1]:end]); next != nil {
			end = l[1] + next[0]
		}
		out[doc[l[2]:l[3]]] = doc[l[1]:end]
	}
	return out
}

// checkSection wants the RPC's routes declared, a curl call of each, and a grpcurl call.
func checkSection(r RPC, body string) []string {
	var problems []string
	declared := map[Route]bool{}
	for _, m := range routeRE.FindAllStringSubmatch(body, -1) {
		declared[Route{m[1], m[2]}] = true
	}
	for _, rt := range r.Routes {
		if !declared[rt] {
			problems = append(problems, fmt.Sprintf("%s: route `%s` not declared in its section", r.Name, rt))
		}
		if !curlCalls(body, rt) {
			problems = append(problems, fmt.Sprintf("%s: no curl example of %s", r.Name, rt))
		}
	}
	for rt := range declared {
		if !slices.Contains(r.Routes, rt) {
			problems = append(problems, fmt.Sprintf("%s: declares route `%s`, which the proto does not bind", r.Name, rt))
		}
	}
	if !regexp.MustCompile(`grpcurl\b[^\n]*(\\\n[^\n]*)*` + regexp.QuoteMeta(r.Name)).MatchString(body) {
		problems = append(problems, fmt.Sprintf("%s: no grpcurl example", r.Name))
	}
	if !strings.Contains(body, "Errors") {
		problems = append(problems, fmt.Sprintf("%s: no Errors paragraph", r.Name))
	}
	return problems
}

// curlCalls reports whether a curl command in body requests rt's path.
func curlCalls(body string, rt Route) bool {
	re := templateRE(rt.Path)
	for _, cmd := range strings.Split(body, "curl ")[1:] {
		// The command runs to the end of its (continued) line.
		end := regexp.MustCompile(`[^\\]\n`).FindStringIndex(cmd)
		if end != nil {
			cmd = cmd[:end[1]]
		}
		for _, m := range pathRE.FindAllStringSubmatch(cmd, -1) {
			if re.MatchString(m[1]) {
				return true
			}
		}
	}
	return false
}

// checkMentions wants every API path and every RPC name in the document to exist.
func checkMentions(doc string, rpcs []RPC) []string {
	var problems []string
	names := map[string]bool{}
	var res []*regexp.Regexp
	for _, r := range rpcs {
		names[r.Name] = true
		for _, rt := range r.Routes {
			res = append(res, templateRE(rt.Path))
		}
	}
	for _, p := range gateway.NativeRoutes {
		res = append(res, regexp.MustCompile("^"+regexp.QuoteMeta(p)+"$"))
		if !strings.Contains(doc, p) {
			problems = append(problems, fmt.Sprintf("the gateway route %s is not documented", p))
		}
	}
	for _, m := range pathRE.FindAllStringSubmatch(doc, -1) {
		if !slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(m[1]) }) {
			problems = append(problems, fmt.Sprintf("the document mentions %s, which no RPC binds", m[1]))
		}
	}
	for _, n := range rpcRE.FindAllString(doc, -1) {
		if !names[n] {
			problems = append(problems, fmt.Sprintf("the document names RPC %s, which the protos do not have", n))
		}
	}
	return problems
}

// templateRE matches the paths of an HTTP rule template: {var} and * match one
// segment, ** any number.
func templateRE(tmpl string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(tmpl); {
		switch {
		case tmpl[i] == '{':
			j := strings.IndexByte(tmpl[i:], '}')
			if j < 0 {
				j = len(tmpl) - i - 1
			}
			b.WriteString(`[^/]+`)
			i += j + 1
		case strings.HasPrefix(tmpl[i:], "**"):
			b.WriteString(`.*`)
			i += 2
		case tmpl[i] == '*':
			b.WriteString(`[^/]+`)
			i++
		default:
			b.WriteString(regexp.QuoteMeta(tmpl[i : i+1]))
			i++
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}
