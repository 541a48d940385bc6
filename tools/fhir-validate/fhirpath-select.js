// Evaluates FHIRPath expressions with HL7's reference implementation (the fhirpath
// package, R4 model) and prints the location of every selected node, for the agreement
// test of internal/fhir. nodesByType('T') is not FHIRPath: it is rewritten to the
// equivalent descendants().ofType(T). Input: {"cases":[{"resource":{...},"paths":[...]}]};
// output: for each case, for each path, the sorted unique locations.
// Usage: node fhirpath-select.js cases.json
'use strict';
const fs = require('fs');
const fhirpath = require('fhirpath');
const r4 = require('fhirpath/fhir-context/r4');

const input = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const rewrite = (p) => p.replace(/nodesByType\('([A-Za-z]+)'\)/g, 'descendants().ofType($1)');
const out = input.cases.map((c) => c.paths.map((p) => {
  const nodes = fhirpath.evaluate(c.resource, rewrite(p), null, r4, { resolveInternalTypes: false });
  const locs = nodes.map((n) => (typeof n.fullPropertyName === 'function' ? n.fullPropertyName() : `?${JSON.stringify(n)}`));
  return [...new Set(locs)].sort();
}));
console.log(JSON.stringify(out));
