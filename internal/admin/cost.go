package admin

import (
	"encoding/json"
	"fmt"

	"github.com/proxyd/proxyd/internal/config"
)

// costFields are a hosts rule's cost fields, as the configuration spells
// them (docs/configuration.md, "Pricing requests: hosts[].cost").
var costFields = []string{"header", "estimate", "default", "max_body", "usage"}

// readCost reads a rule's cost object at key ("hosts[0].cost"), strictly:
// known fields only, each of its type; max_body a size string ("1MiB",
// "512KiB", "65536") or a number of bytes. null means not set (the
// defaults). Problems go to p.problems.
func (p *limitsPatch) readCost(key string, v json.RawMessage) *config.Cost {
	switch jsonKind(v) {
	case "null":
		return nil
	case "object":
	default:
		p.problems = append(p.problems, wrongType(key, v, "an object"))
		return nil
	}
	ms, err := members(v)
	if err != nil {
		p.problems = append(p.problems, fmt.Errorf("%s: %v", key, jsonError(err)))
		return nil
	}
	c := &config.Cost{}
	eachKnown(key+".", ms, costFields, &p.problems, func(m member) {
		name := key + "." + m.name
		var err error
		switch m.name {
		case "header", "estimate":
			var s *string
			if err = readString(name, m.value, &s); err == nil && s != nil {
				if m.name == "header" {
					c.Header = *s
				} else {
					c.Estimate = *s
				}
			}
		case "default":
			var n *int
			if err = readInt(name, m.value, &n); err == nil && n != nil {
				d := int64(*n)
				c.Default = &d
			}
		case "max_body":
			err = readSize(name, m.value, &c.MaxBody)
		case "usage":
			err = readStrings(name, m.value, &c.Usage)
		}
		if err != nil {
			p.problems = append(p.problems, err)
		}
	})
	return c
}

// readSize reads a size: a string config.ParseByteSize reads, or an
// integer of bytes; null leaves *dst nil.
func readSize(key string, v json.RawMessage, dst **config.ByteSize) error {
	switch jsonKind(v) {
	case "null":
		return nil
	case "number":
		var n *int
		if err := readInt(key, v, &n); err != nil {
			return fmt.Errorf("%s: wrong type: got JSON number %s, want a size (\"1MiB\", \"512KiB\") or an integer of bytes", key, clip(string(v), maxQuote))
		}
		b := config.ByteSize(*n)
		*dst = &b
		return nil
	case "string":
	default:
		return wrongType(key, v, `a size ("1MiB", "512KiB") or an integer of bytes`)
	}
	var s *string
	if err := readString(key, v, &s); err != nil {
		return err
	}
	b, err := config.ParseByteSize(*s)
	if err != nil {
		return fmt.Errorf("%s: %s", key, clipQuoted(err.Error()))
	}
	*dst = &b
	return nil
}

// readStrings reads an array of strings, naming a wrong entry by its
// index; null leaves *dst nil.
func readStrings(key string, v json.RawMessage, dst *[]string) error {
	switch jsonKind(v) {
	case "null":
		return nil
	case "array":
	default:
		return wrongType(key, v, "an array of strings")
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(v, &entries); err != nil {
		return fmt.Errorf("%s: %v", key, jsonError(err))
	}
	out := make([]string, len(entries))
	for i, e := range entries {
		var s *string
		name := fmt.Sprintf("%s[%d]", key, i)
		if jsonKind(e) != "string" {
			return wrongType(name, e, "a string")
		}
		if err := readString(name, e, &s); err != nil {
			return err
		}
		out[i] = *s
	}
	*dst = out
	return nil
}
