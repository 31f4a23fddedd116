package config

import (
	"fmt"
	"strings"

	"github.com/knadh/koanf/v2"

	"github.com/ferrymq/ferry/frontends/native/nativeconf"
)

// rename is a key that moved: the file's Old is still read as New, a
// deprecated alias, with a note.
type rename struct{ Old, New string }

// renamed are the keys that moved: broker-name into the broker section,
// the native front-end's top-level keys into its section.
var renamed = func() []rename {
	r := []rename{{"broker-name", "broker.name"}}
	for _, kv := range nativeconf.Renamed {
		r = append(r, rename{kv[0], nativeconf.Section + "." + kv[1]})
	}
	return r
}()

// renameFileKeys moves each old key of the file (k, read from path) to its
// new key and returns a note for each. The old and the new key both set to
// different values is an error naming both.
func renameFileKeys(k *koanf.Koanf, path string) ([]string, error) {
	var notes []string
	for _, r := range renamed {
		if !k.Exists(r.Old) {
			continue
		}
		old := k.Get(r.Old)
		if k.Exists(r.New) {
			if cur := k.Get(r.New); fmt.Sprint(cur) != fmt.Sprint(old) {
				return nil, fmt.Errorf("config file %s: %s and %s set to different values: %s is the old key of %s; keep %s only",
					path, r.Old, r.New, r.Old, r.New, r.New)
			}
		} else if err := k.Set(r.New, old); err != nil {
			return nil, fmt.Errorf("config file %s: %s: %w", path, r.Old, err)
		}
		k.Delete(r.Old)
		section, leaf, _ := strings.Cut(r.New, ".")
		notes = append(notes, fmt.Sprintf("config file %s: the key %s is deprecated: write %s (a %s: section with %s:)",
			path, r.Old, r.New, section, leaf))
	}
	return notes, nil
}

// renameEnv reads the environment variable of an old key, where it is not
// the new key's (FERRY_ADVERTISE_ADDR; FERRY_NATIVE_ADDR names both
// native-addr and native.addr), as the new key's variable, with a note. It
// returns environ with those added. Both set to different values is an
// error naming both.
func renameEnv(environ []string) ([]string, []string, error) {
	var notes []string
	var added []string
	for _, r := range renamed {
		oldName, newName := EnvName(r.Old), EnvName(r.New)
		if oldName == newName {
			continue
		}
		old := lookupEnv(environ, oldName)
		if old == "" {
			continue
		}
		if cur := lookupEnv(environ, newName); cur == "" {
			added = append(added, newName+"="+old)
		} else if cur != old {
			return nil, nil, fmt.Errorf("environment: %s and %s set to different values: %s is the old variable of %s; keep %s only",
				oldName, newName, oldName, r.New, newName)
		}
		notes = append(notes, fmt.Sprintf("environment: %s is deprecated: set %s (the key %s)", oldName, newName, r.New))
	}
	if len(added) == 0 {
		return environ, notes, nil
	}
	return append(append([]string(nil), environ...), added...), notes, nil
}
