package fhir

// Restricted ZIP3 tables: three-digit ZIP areas with 20,000 people or fewer, which
// 45 CFR 164.514(b)(2)(i)(B) requires to become 000. The lists depend on the census year,
// so they are versioned and a profile names the one it uses.
const (
	// ZIP3Census2000 is HHS's list from 2000 Census data (Guidance Regarding Methods for
	// De-identification of PHI, 2012, §3.4): 17 ZIP3s.
	ZIP3Census2000 = "hhs-census-2000"
	// ZIP3AnonymizerSample is the 14-entry list of Microsoft's FHIR anonymizer sample
	// configuration (restrictedZipCodeTabulationAreas).
	ZIP3AnonymizerSample = "fhir-anonymizer-sample"
)

var restrictedZIP3Tables = map[string][]string{
	ZIP3Census2000: {"036", "059", "063", "102", "203", "556", "692", "790", "821", "823",
		"830", "831", "878", "879", "884", "890", "893"},
	ZIP3AnonymizerSample: {"036", "059", "102", "203", "205", "369", "556", "692", "821",
		"823", "878", "879", "884", "893"},
}

// zip3 generalizes a US ZIP code (five digits, or ZIP+4) to its first three digits, or
// 000 for a restricted area. Anything else is not a US ZIP and is removed (ok false).
func (p *Profile) zip3Of(zip string) (string, bool) {
	if len(zip) != 5 && !(len(zip) == 10 && zip[5] == '-') {
		return "", false
	}
	for i, r := range zip {
		if i != 5 && (r < '0' || r > '9') {
			return "", false
		}
	}
	z := zip[:3]
	if p.zip3[z] {
		return "000", true
	}
	return z, true
}
