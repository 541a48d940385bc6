package fhir

import (
	"strings"
)

// elemDef is one element of a FHIR type: its name, its type (or the types of a choice
// element value[x]) and whether it repeats.
type elemDef struct {
	name     string
	types    []string // one type, or the choices of a [x] element
	choice   bool
	repeats  bool
	required bool // min cardinality 1
}

// typeDef is a complex type, backbone element or resource type of the FHIR R4 model.
type typeDef struct {
	name    string
	base    string
	elems   map[string]*elemDef
	choices map[string]choiceKey // JSON key of a choice variant (valueQuantity) → element, type
}

type choiceKey struct {
	e   *elemDef
	typ string
}

// r4 is the compact FHIR R4 model this package knows: the resource types of a Synthea
// patient record and the data types they use. Lines read `Type < Base: elem type; elem[x]
// t1|t2; elem Type*` (* repeats, ! required). Element and resource ids are System.String as in the
// FHIRPath R4 model. Resource types outside this table are refused (fail closed).
const r4 = `
Element: id System.String; extension Extension*
BackboneElement < Element: modifierExtension Extension*
Resource: id System.String; meta Meta; implicitRules uri; language code
DomainResource < Resource: text Narrative; contained Resource*; extension Extension*; modifierExtension Extension*
Extension < Element: url System.String!; value[x] base64Binary|boolean|canonical|code|date|dateTime|decimal|id|instant|integer|markdown|oid|positiveInt|string|time|unsignedInt|uri|url|uuid|Address|Age|Annotation|Attachment|CodeableConcept|Coding|ContactPoint|Count|Distance|Duration|HumanName|Identifier|Money|Period|Quantity|Range|Ratio|Reference|Timing|Dosage|Meta
Meta < Element: versionId id; lastUpdated instant; source uri; profile canonical*; security Coding*; tag Coding*
Narrative < Element: status code!; div xhtml!
Identifier < Element: use code; type CodeableConcept; system uri; value string; period Period; assigner Reference
HumanName < Element: use code; text string; family string; given string*; prefix string*; suffix string*; period Period
ContactPoint < Element: system code; value string; use code; rank positiveInt; period Period
Address < Element: use code; type code; text string; line string*; city string; district string; state string; postalCode string; country string; period Period
Period < Element: start dateTime; end dateTime
Coding < Element: system uri; version string; code code; display string; userSelected boolean
CodeableConcept < Element: coding Coding*; text string
Reference < Element: reference string; type uri; identifier Identifier; display string
Quantity < Element: value decimal; comparator code; unit string; system uri; code code
Age < Quantity:
Duration < Quantity:
Count < Quantity:
Distance < Quantity:
SimpleQuantity < Quantity:
MoneyQuantity < Quantity:
Money < Element: value decimal; currency code
Range < Element: low SimpleQuantity; high SimpleQuantity
Ratio < Element: numerator Quantity; denominator Quantity
Attachment < Element: contentType code; language code; data base64Binary; url url; size unsignedInt; hash base64Binary; title string; creation dateTime
Annotation < Element: author[x] Reference|string; time dateTime; text markdown
Timing < BackboneElement: event dateTime*; repeat Timing.repeat; code CodeableConcept
Timing.repeat < Element: bounds[x] Duration|Range|Period; count positiveInt; countMax positiveInt; duration decimal; durationMax decimal; durationUnit code; frequency positiveInt; frequencyMax positiveInt; period decimal; periodMax decimal; periodUnit code; dayOfWeek code*; timeOfDay time*; when code*; offset unsignedInt
Dosage < BackboneElement: sequence integer; text string; additionalInstruction CodeableConcept*; patientInstruction string; timing Timing; asNeeded[x] boolean|CodeableConcept; site CodeableConcept; route CodeableConcept; method CodeableConcept; doseAndRate Dosage.doseAndRate*; maxDosePerPeriod Ratio; maxDosePerAdministration SimpleQuantity; maxDosePerLifetime SimpleQuantity
Dosage.doseAndRate < Element: type CodeableConcept; dose[x] Range|SimpleQuantity; rate[x] Ratio|Range|SimpleQuantity
Patient < DomainResource: identifier Identifier*; active boolean; name HumanName*; telecom ContactPoint*; gender code; birthDate date; deceased[x] boolean|dateTime; address Address*; maritalStatus CodeableConcept; multipleBirth[x] boolean|integer; photo Attachment*; contact Patient.contact*; communication Patient.communication*; generalPractitioner Reference*; managingOrganization Reference; link Patient.link*
Patient.contact < BackboneElement: relationship CodeableConcept*; name HumanName; telecom ContactPoint*; address Address; gender code; organization Reference; period Period
Patient.communication < BackboneElement: language CodeableConcept!; preferred boolean
Patient.link < BackboneElement: other Reference!; type code!
Encounter < DomainResource: identifier Identifier*; status code!; statusHistory Encounter.statusHistory*; class Coding!; classHistory Encounter.classHistory*; type CodeableConcept*; serviceType CodeableConcept; priority CodeableConcept; subject Reference; episodeOfCare Reference*; basedOn Reference*; participant Encounter.participant*; appointment Reference*; period Period; length Duration; reasonCode CodeableConcept*; reasonReference Reference*; diagnosis Encounter.diagnosis*; account Reference*; hospitalization Encounter.hospitalization; location Encounter.location*; serviceProvider Reference; partOf Reference
Encounter.statusHistory < BackboneElement: status code!; period Period!
Encounter.classHistory < BackboneElement: class Coding!; period Period!
Encounter.participant < BackboneElement: type CodeableConcept*; period Period; individual Reference
Encounter.diagnosis < BackboneElement: condition Reference!; use CodeableConcept; rank positiveInt
Encounter.hospitalization < BackboneElement: preAdmissionIdentifier Identifier; origin Reference; admitSource CodeableConcept; reAdmission CodeableConcept; dietPreference CodeableConcept*; specialCourtesy CodeableConcept*; specialArrangement CodeableConcept*; destination Reference; dischargeDisposition CodeableConcept
Encounter.location < BackboneElement: location Reference!; status code; physicalType CodeableConcept; period Period
Observation < DomainResource: identifier Identifier*; basedOn Reference*; partOf Reference*; status code!; category CodeableConcept*; code CodeableConcept!; subject Reference; focus Reference*; encounter Reference; effective[x] dateTime|Period|Timing|instant; issued instant; performer Reference*; value[x] Quantity|CodeableConcept|string|boolean|integer|Range|Ratio|SampledData|time|dateTime|Period; dataAbsentReason CodeableConcept; interpretation CodeableConcept*; note Annotation*; bodySite CodeableConcept; method CodeableConcept; specimen Reference; device Reference; referenceRange Observation.referenceRange*; hasMember Reference*; derivedFrom Reference*; component Observation.component*
Observation.referenceRange < BackboneElement: low SimpleQuantity; high SimpleQuantity; type CodeableConcept; appliesTo CodeableConcept*; age Range; text string
Observation.component < BackboneElement: code CodeableConcept!; value[x] Quantity|CodeableConcept|string|boolean|integer|Range|Ratio|SampledData|time|dateTime|Period; dataAbsentReason CodeableConcept; interpretation CodeableConcept*; referenceRange Observation.referenceRange*
Condition < DomainResource: identifier Identifier*; clinicalStatus CodeableConcept; verificationStatus CodeableConcept; category CodeableConcept*; severity CodeableConcept; code CodeableConcept; bodySite CodeableConcept*; subject Reference!; encounter Reference; onset[x] dateTime|Age|Period|Range|string; abatement[x] dateTime|Age|Period|Range|string; recordedDate dateTime; recorder Reference; asserter Reference; stage Condition.stage*; evidence Condition.evidence*; note Annotation*
Condition.stage < BackboneElement: summary CodeableConcept; assessment Reference*; type CodeableConcept
Condition.evidence < BackboneElement: code CodeableConcept*; detail Reference*
MedicationRequest < DomainResource: identifier Identifier*; status code!; statusReason CodeableConcept; intent code!; category CodeableConcept*; priority code; doNotPerform boolean; reported[x] boolean|Reference; medication[x] CodeableConcept|Reference!; subject Reference!; encounter Reference; supportingInformation Reference*; authoredOn dateTime; requester Reference; performer Reference; performerType CodeableConcept; recorder Reference; reasonCode CodeableConcept*; reasonReference Reference*; instantiatesCanonical canonical*; instantiatesUri uri*; basedOn Reference*; groupIdentifier Identifier; courseOfTherapyType CodeableConcept; insurance Reference*; note Annotation*; dosageInstruction Dosage*; dispenseRequest MedicationRequest.dispenseRequest; substitution MedicationRequest.substitution; priorPrescription Reference; detectedIssue Reference*; eventHistory Reference*
MedicationRequest.dispenseRequest < BackboneElement: initialFill MedicationRequest.dispenseRequest.initialFill; dispenseInterval Duration; validityPeriod Period; numberOfRepeatsAllowed unsignedInt; quantity SimpleQuantity; expectedSupplyDuration Duration; performer Reference
MedicationRequest.dispenseRequest.initialFill < BackboneElement: quantity SimpleQuantity; duration Duration
MedicationRequest.substitution < BackboneElement: allowed[x] boolean|CodeableConcept; reason CodeableConcept
Immunization < DomainResource: identifier Identifier*; status code!; statusReason CodeableConcept; vaccineCode CodeableConcept!; patient Reference!; encounter Reference; occurrence[x] dateTime|string!; recorded dateTime; primarySource boolean; reportOrigin CodeableConcept; location Reference; manufacturer Reference; lotNumber string; expirationDate date; site CodeableConcept; route CodeableConcept; doseQuantity SimpleQuantity; performer Immunization.performer*; note Annotation*; reasonCode CodeableConcept*; reasonReference Reference*; isSubpotent boolean; subpotentReason CodeableConcept*; education Immunization.education*; programEligibility CodeableConcept*; fundingSource CodeableConcept; reaction Immunization.reaction*; protocolApplied Immunization.protocolApplied*
Immunization.performer < BackboneElement: function CodeableConcept; actor Reference!
Immunization.education < BackboneElement: documentType string; reference uri; publicationDate dateTime; presentationDate dateTime
Immunization.reaction < BackboneElement: date dateTime; detail Reference; reported boolean
Immunization.protocolApplied < BackboneElement: series string; authority Reference; targetDisease CodeableConcept*; doseNumber[x] positiveInt|string!; seriesDoses[x] positiveInt|string
Claim < DomainResource: identifier Identifier*; status code!; type CodeableConcept!; subType CodeableConcept; use code!; patient Reference!; billablePeriod Period; created dateTime!; enterer Reference; insurer Reference; provider Reference!; priority CodeableConcept!; fundsReserve CodeableConcept; related Claim.related*; prescription Reference; originalPrescription Reference; payee Claim.payee; referral Reference; facility Reference; careTeam Claim.careTeam*; supportingInfo Claim.supportingInfo*; diagnosis Claim.diagnosis*; procedure Claim.procedure*; insurance Claim.insurance*!; accident Claim.accident; item Claim.item*; total Money
Claim.related < BackboneElement: claim Reference; relationship CodeableConcept; reference Identifier
Claim.payee < BackboneElement: type CodeableConcept!; party Reference
Claim.careTeam < BackboneElement: sequence positiveInt!; provider Reference!; responsible boolean; role CodeableConcept; qualification CodeableConcept
Claim.supportingInfo < BackboneElement: sequence positiveInt!; category CodeableConcept!; code CodeableConcept; timing[x] date|Period; value[x] boolean|string|Quantity|Attachment|Reference; reason CodeableConcept
Claim.diagnosis < BackboneElement: sequence positiveInt!; diagnosis[x] CodeableConcept|Reference!; type CodeableConcept*; onAdmission CodeableConcept; packageCode CodeableConcept
Claim.procedure < BackboneElement: sequence positiveInt!; type CodeableConcept*; date dateTime; procedure[x] CodeableConcept|Reference!; udi Reference*
Claim.insurance < BackboneElement: sequence positiveInt!; focal boolean!; identifier Identifier; coverage Reference!; businessArrangement string; preAuthRef string*; claimResponse Reference
Claim.accident < BackboneElement: date date!; type CodeableConcept; location[x] Address|Reference
Claim.item < BackboneElement: sequence positiveInt!; careTeamSequence positiveInt*; diagnosisSequence positiveInt*; procedureSequence positiveInt*; informationSequence positiveInt*; revenue CodeableConcept; category CodeableConcept; productOrService CodeableConcept!; modifier CodeableConcept*; programCode CodeableConcept*; serviced[x] date|Period; location[x] CodeableConcept|Address|Reference; quantity SimpleQuantity; unitPrice Money; factor decimal; net Money; udi Reference*; bodySite CodeableConcept; subSite CodeableConcept*; encounter Reference*; detail Claim.item.detail*
Claim.item.detail < BackboneElement: sequence positiveInt!; revenue CodeableConcept; category CodeableConcept; productOrService CodeableConcept!; modifier CodeableConcept*; programCode CodeableConcept*; quantity SimpleQuantity; unitPrice Money; factor decimal; net Money; udi Reference*
DiagnosticReport < DomainResource: identifier Identifier*; basedOn Reference*; status code!; category CodeableConcept*; code CodeableConcept!; subject Reference; encounter Reference; effective[x] dateTime|Period; issued instant; performer Reference*; resultsInterpreter Reference*; specimen Reference*; result Reference*; imagingStudy Reference*; media DiagnosticReport.media*; conclusion string; conclusionCode CodeableConcept*; presentedForm Attachment*
DiagnosticReport.media < BackboneElement: comment string; link Reference!
Practitioner < DomainResource: identifier Identifier*; active boolean; name HumanName*; telecom ContactPoint*; address Address*; gender code; birthDate date; photo Attachment*; qualification Practitioner.qualification*; communication CodeableConcept*
Practitioner.qualification < BackboneElement: identifier Identifier*; code CodeableConcept!; period Period; issuer Reference
Organization < DomainResource: identifier Identifier*; active boolean; type CodeableConcept*; name string; alias string*; telecom ContactPoint*; address Address*; partOf Reference; contact Organization.contact*; endpoint Reference*
Organization.contact < BackboneElement: purpose CodeableConcept; name HumanName; telecom ContactPoint*; address Address
`

// primitiveBase gives the FHIRPath supertypes of primitive and quantity types, so that
// ofType(string) also selects code, id and markdown as the FHIRPath R4 model does.
var primitiveBase = map[string]string{
	"code": "string", "id": "string", "markdown": "string",
	"url": "uri", "canonical": "uri", "oid": "uri", "uuid": "uri",
	"unsignedInt": "integer", "positiveInt": "integer",
	"Age": "Quantity", "Duration": "Quantity", "Count": "Quantity", "Distance": "Quantity",
	"SimpleQuantity": "Quantity", "MoneyQuantity": "Quantity",
}

var model = parseModel(r4)

func parseModel(src string) map[string]*typeDef {
	m := map[string]*typeDef{}
	for _, line := range strings.Split(strings.TrimSpace(src), "\n") {
		head, body, _ := strings.Cut(line, ":")
		name, base, _ := strings.Cut(head, "<")
		td := &typeDef{name: strings.TrimSpace(name), base: strings.TrimSpace(base), elems: map[string]*elemDef{}, choices: map[string]choiceKey{}}
		for _, f := range strings.Split(body, ";") {
			fs := strings.Fields(f)
			if len(fs) != 2 {
				continue
			}
			e := &elemDef{name: fs[0]}
			t := fs[1]
			if strings.HasSuffix(t, "!") {
				e.required, t = true, strings.TrimSuffix(t, "!")
			}
			if strings.HasSuffix(t, "*") {
				e.repeats, t = true, strings.TrimSuffix(t, "*")
			}
			if strings.HasSuffix(e.name, "[x]") {
				e.name, e.choice = strings.TrimSuffix(e.name, "[x]"), true
			}
			e.types = strings.Split(t, "|")
			td.elems[e.name] = e
			for _, ct := range e.types {
				if e.choice {
					td.choices[e.name+strings.ToUpper(ct[:1])+ct[1:]] = choiceKey{e, ct}
				}
			}
		}
		m[td.name] = td
	}
	return m
}

// isResourceType reports whether t is a resource type this package can process.
func isResourceType(t string) bool {
	for d := model[t]; d != nil; d = model[d.base] {
		if d.name == "DomainResource" && t != "DomainResource" {
			return true
		}
	}
	return false
}

// isPrimitive reports whether a FHIR type name denotes a primitive (JSON scalar) type.
func isPrimitive(t string) bool {
	return t != "" && (t[0] >= 'a' && t[0] <= 'z' || strings.HasPrefix(t, "System."))
}

// isA reports whether type t is typ or one of its FHIRPath subtypes (code is a string,
// Age a Quantity, every resource type a Resource).
func isA(t, typ string) bool {
	for t != "" {
		if t == typ || typ == "Resource" && isResourceType(t) {
			return true
		}
		t = primitiveBase[t]
	}
	return false
}

// lookupElem finds the element definition of a JSON key under type t, resolving choice
// elements (valueQuantity → value, Quantity). It returns the FHIRPath name and type.
func lookupElem(t, key string) (e *elemDef, name, typ string) {
	for d := model[t]; d != nil; d = model[d.base] {
		if e := d.elems[key]; e != nil && !e.choice {
			return e, key, e.types[0]
		}
		if c, ok := d.choices[key]; ok {
			return c.e, c.e.name, c.typ
		}
	}
	return nil, key, ""
}

// elemByName finds the element a FHIRPath name denotes under type t (or a base), choice
// elements by their name without [x].
func elemByName(t, name string) *elemDef {
	for d := model[t]; d != nil; d = model[d.base] {
		if e := d.elems[name]; e != nil {
			return e
		}
	}
	return nil
}
