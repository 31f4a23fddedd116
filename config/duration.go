package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// durationSyntax says what a duration key takes; every error about one
// ends with it.
const durationSyntax = "a Go duration is a number with a unit: ns, us, ms, s, m or h, as in 200ms, 10s, 1m30s or 72h"

// durationHook decodes a duration key from the file, the environment or a
// flag. A number without a unit is refused: YAML's heartbeat-timeout: 10
// would otherwise be read as 10 nanoseconds, which no one means. 0 needs
// no unit (it is 0 in every unit).
func durationHook(_ reflect.Type, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeFor[time.Duration]() {
		return data, nil
	}
	switch v := data.(type) {
	case time.Duration: // a flag's value, parsed by pflag
		return v, nil
	case string:
		return parseDuration(v)
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		s := fmt.Sprint(v)
		if s == "0" {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("%s has no unit: write %ss for seconds (%s)", s, s, durationSyntax)
	}
	return nil, fmt.Errorf("%v (%T) is not a duration: %s", data, data, durationSyntax)
}

// parseDuration is time.ParseDuration with errors that say what was wrong
// and what is allowed.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err == nil {
		return d, nil
	}
	if _, numErr := strconv.ParseFloat(strings.TrimSpace(s), 64); numErr == nil {
		return 0, fmt.Errorf("%q has no unit: write %ss for seconds (%s)", s, strings.TrimSpace(s), durationSyntax)
	}
	return 0, errors.New(strconv.Quote(s) + " is not a duration: " + durationSyntax)
}
