package processor

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/firehose/firehose/internal/yamlconf"
)

// MaskConfig is processor.mask: it replaces personal data before anything leaves the processor.
type MaskConfig struct {
	// Defaults adds the default rules: lead_data.ssn last4,
	// lead_data.email email, lead_data.phone phone_area,
	// lead_data.first_name and lead_data.last_name initial. Default true.
	// A rule in Rules for the same path replaces the default one.
	Defaults *bool      `yaml:"defaults"`
	Rules    []MaskRule `yaml:"rules"`
	// HashKey is the HMAC-SHA-256 key of the hash strategy; put it in
	// the environment: hash_key: ${FIREHOSE_MASK_KEY}.
	HashKey string `yaml:"hash_key"`
}

// MaskRule masks the value at Path (lead_data.ssn, metadata.contact.email,
// or <unknown top-level field>.sub) with Strategy: last4, email,
// phone_area, initial, hash or drop.
type MaskRule struct {
	Path     string `yaml:"path"`
	Strategy string `yaml:"strategy"`
}

// DefaultMaskRules are the rules MaskConfig.Defaults adds.
var DefaultMaskRules = []MaskRule{
	{"lead_data.ssn", "last4"},
	{"lead_data.email", "email"},
	{"lead_data.phone", "phone_area"},
	{"lead_data.first_name", "initial"},
	{"lead_data.last_name", "initial"},
}

// MaskRules returns the rules in force: the defaults (unless disabled)
// overridden by path by the configured ones, in a stable order.
func (m MaskConfig) MaskRules() []MaskRule {
	var out []MaskRule
	if m.Defaults == nil || *m.Defaults {
		for _, d := range DefaultMaskRules {
			if !slices.ContainsFunc(m.Rules, func(r MaskRule) bool { return r.Path == d.Path }) {
				out = append(out, d)
			}
		}
	}
	return append(out, m.Rules...)
}

// MaskStrategies are the values MaskRule.Strategy accepts.
var MaskStrategies = []string{"last4", "email", "phone_area", "initial", "hash", "drop"}

// A mask path: a container (lead_data, metadata or an unknown top-level
// field) and at least one key, each of plain characters.
var maskPathRe = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$`)

func (m MaskConfig) validate() error {
	var v yamlconf.Problems
	hash := false
	for i, r := range m.Rules {
		p := fmt.Sprintf("rules[%d]", i)
		if !maskPathRe.MatchString(r.Path) {
			v.Add(p+".path", "must be a dotted path into an object field, such as lead_data.ssn or metadata.contact.email; got %q", r.Path)
		}
		v.OneOf(p+".strategy", r.Strategy, MaskStrategies)
		hash = hash || r.Strategy == "hash"
	}
	if hash && len(m.HashKey) < 16 {
		v.Add("hash_key", "the hash strategy needs a key of at least 16 bytes; set hash_key: ${FIREHOSE_MASK_KEY} and put the key in the environment")
	}
	return v.Err()
}
