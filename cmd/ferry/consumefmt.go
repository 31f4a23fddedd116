package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/ferrymq/ferry/client"
)

// consumeFormats are what ferry consume --format takes.
const consumeFormats = "body (the body, a line each), text (id, subject, delivery count, properties, then the body) or json (a JSON object a line)"

// checkConsumeFormat checks --format.
func checkConsumeFormat(f string) error {
	switch f {
	case "body", "text", "json":
		return nil
	}
	return fmt.Errorf("--format %q: want %s", f, consumeFormats)
}

// writeConsumed writes a message ferry consume received in format f.
func writeConsumed(out *bufio.Writer, m *client.MessageExt, f string) error {
	switch f {
	case "json":
		raw, err := json.Marshal(messageViewOf(m))
		if err != nil {
			return err
		}
		out.Write(raw)
		return out.WriteByte('\n')
	case "text":
		fmt.Fprintf(out, "id=%s subject=%s deliveries=%d topic=%s queue=%d offset=%d", m.ID, strconv.Quote(m.Tag),
			m.ReconsumeTimes+1, m.Topic, m.QueueID, m.QueueOffset)
		if len(m.Keys) > 0 {
			fmt.Fprintf(out, " keys=%s", strconv.Quote(fmt.Sprint(m.Keys)))
		}
		for _, k := range slices.Sorted(maps.Keys(m.Properties)) {
			fmt.Fprintf(out, " %s=%s", k, strconv.Quote(m.Properties[k]))
		}
		out.WriteByte('\n')
		if utf8.Valid(m.Body) {
			out.Write(m.Body)
		} else {
			fmt.Fprintf(out, "(%d bytes, not UTF-8)", len(m.Body))
		}
		_, err := out.WriteString("\n\n")
		return err
	}
	out.Write(m.Body)
	return out.WriteByte('\n')
}
