// Validates a FHIR R4 Bundle of clinical resources (the FHIR de-identification tests) with
// the fhir package: the Bundle and each entry's resource. Errors fail, and so do warnings,
// except "not found in value set": the package's value-set tables do not hold SNOMED CT,
// LOINC, RxNorm or CVX and it checks example bindings, so it cannot judge those codes.
// Usage: node validate-bundle.js bundle.json
'use strict';
const fs = require('fs');
const { Fhir } = require('fhir');

const bundle = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const fhir = new Fhir();
const problems = [];
const check = (what, resource) => {
  const r = fhir.validate(resource);
  for (const m of r.messages) {
    if (m.severity === 'info' || m.severity === 'information') continue;
    if (m.severity === 'warning' && /not found in value set/.test(m.message)) continue;
    problems.push(`${what}: ${m.severity} at ${m.location}: ${m.message}`);
  }
};
if (bundle.resourceType !== 'Bundle') problems.push('not a Bundle');
check('Bundle', bundle);
(bundle.entry || []).forEach((e, i) => check(`entry ${i} (${e.resource && e.resource.resourceType})`, e.resource));
if (problems.length > 0) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`valid: ${(bundle.entry || []).length} resources`);
