// Validates a FHIR R4 Bundle file with the fhir package: the bundle and each entry's
// resource. Errors and warnings (unexpected properties, codes outside a value set) both
// fail, with one exception: a "not found in value set" warning at a location where the
// validator itself reports that it does not have the value set (it ships without
// v3-PurposeOfUse), since it cannot judge such a code either way. Usage:
//   node validate.js bundle.json
'use strict';
const fs = require('fs');
const { Fhir } = require('fhir');

const bundle = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const fhir = new Fhir();
const problems = [];
const check = (what, resource) => {
  const r = fhir.validate(resource);
  const unknownSets = new Set(r.messages
    .filter((m) => m.severity === 'information' || m.severity === 'info')
    .filter((m) => /Value set .* could not be found/.test(m.message))
    .map((m) => m.location));
  for (const m of r.messages) {
    if (m.severity === 'info' || m.severity === 'information') continue;
    if (m.severity === 'warning' && /not found in value set/.test(m.message) && unknownSets.has(m.location)) continue;
    problems.push(`${what}: ${m.severity} at ${m.location}: ${m.message}`);
  }
  if (!r.valid && problems.length === 0) problems.push(`${what}: invalid`);
};
if (bundle.resourceType !== 'Bundle') problems.push('not a Bundle');
check('Bundle', bundle);
(bundle.entry || []).forEach((e, i) => check(`entry ${i} (${e.resource && e.resource.resourceType})`, e.resource));
if (problems.length > 0) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`valid: ${(bundle.entry || []).length} AuditEvent resources`);
