package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// keyAnnotation marks a flag bound to a config key; its value is the key.
const keyAnnotation = "ferry-config-key"

// Keys returns every key of Config that an environment variable or a flag
// can set, sorted: storage.segment-size, …. Lists (bridges) come from the
// file only.
func Keys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for f := range t.Fields() {
			key := prefix + f.Tag.Get("koanf")
			if f.Type.Kind() == reflect.Slice {
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(f.Type, key+".")
				continue
			}
			if f.Type.Kind() == reflect.Slice {
				continue // a list (mqtt.rules) is set in the config file only
			}
			keys = append(keys, key)
		}
	}
	walk(reflect.TypeFor[Config](), "")
	sort.Strings(keys)
	return keys
}

// envKeys maps each environment variable Ferry reads to its key. Two keys
// sharing one variable (data.dir and data-dir) is a programming error.
func envKeys() map[string]string {
	m := make(map[string]string)
	for _, k := range Keys() {
		name := EnvName(k)
		if other, dup := m[name]; dup {
			panic(fmt.Sprintf("config: keys %s and %s both map to %s", other, k, name))
		}
		m[name] = k
	}
	return m
}

// AddFlag defines the flag --name on fs to set key. The flag's type follows
// the key's field in Config (a *bool, unset by default, is a bool flag) and
// its default is the key's value in Default;
// the usage gets the key's environment variable appended. An unknown key or
// an unsupported field type panics: that is a programming error, caught by
// any test that builds the command.
func AddFlag(fs *pflag.FlagSet, name, key, usage string) {
	v, ok := lookup(reflect.ValueOf(Default()), key)
	if !ok {
		panic(fmt.Sprintf("config: flag --%s: no key %q", name, key))
	}
	usage = fmt.Sprintf("%s (env %s)", usage, EnvName(key))
	switch def := v.Interface().(type) {
	case string:
		fs.String(name, def, usage)
	case bool:
		fs.Bool(name, def, usage)
	case *bool: // unset unless given: the flag counts only when set
		fs.Bool(name, def != nil && *def, usage)
	case int:
		fs.Int(name, def, usage)
	case int64:
		fs.Int64(name, def, usage)
	case float64:
		fs.Float64(name, def, usage)
	case time.Duration:
		fs.Duration(name, def, usage)
	default:
		panic(fmt.Sprintf("config: flag --%s: key %s has unsupported type %T", name, key, def))
	}
	if err := fs.SetAnnotation(name, keyAnnotation, []string{key}); err != nil {
		panic(err) // the flag was defined just above
	}
}

// lookup finds the field of v (a struct) for a dotted key.
func lookup(v reflect.Value, key string) (reflect.Value, bool) {
	for part := range strings.SplitSeq(key, ".") {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		found := false
		for i := range v.NumField() {
			if v.Type().Field(i).Tag.Get("koanf") == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return reflect.Value{}, false
		}
	}
	return v, v.Kind() != reflect.Struct
}
