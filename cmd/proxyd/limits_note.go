package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// writeSetTable prints the answer of "limits set" as "limits get" does
// and, when --rate changed but --burst did not and the burst is more than
// a second's worth, what the burst that stayed means: "limits set --rate
// 2" keeps burst 10, so ten requests can still go at once (issue 25).
func writeSetTable(w io.Writer, data []byte, flags *pflag.FlagSet) error {
	if err := writeLimitsTable(w, data); err != nil {
		return err
	}
	if flags == nil || !flags.Changed("rate") || flags.Changed("burst") {
		return nil
	}
	var l struct {
		Rate  json.Number `json:"rate"`
		Burst json.Number `json:"burst"`
	}
	if json.Unmarshal(data, &l) != nil {
		return nil
	}
	rate, err1 := l.Rate.Float64()
	burst, err2 := l.Burst.Int64()
	if err1 != nil || err2 != nil || rate <= 0 || float64(burst) <= rate {
		return nil
	}
	_, err := fmt.Fprintf(w, "\nrate %s/s, burst %d: up to %d requests may go at once, then %s a second; set --burst to change\n", l.Rate, burst, burst, l.Rate)
	return err
}
