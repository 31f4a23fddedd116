// Package route is the core's live-routing table: given a new message's
// topic and subject, it finds every subscription whose filter matches, so
// the message is delivered once to each, whichever protocol published it.
//
// A [Filter] is parsed from the expression a subscriber gave: `*`, a
// RocketMQ tag list `a || b`, an MQTT-style wildcard on the subject
// (`+/telemetry`, `42/#`) or a plain subject. A [Table] indexes
// (topic, filter, subscriber) entries so that matching costs in proportion to
// the subject's depth and the number of matches, not the number of
// subscriptions: per topic, exact subjects (and each tag of a tag list) are
// keys of a hash map, wildcard filters are paths in a trie over subject
// levels with `+` and `#` branches, and `*` entries are a plain list.
//
// The package is pure: no goroutines, no I/O, no logging. Table is safe for
// concurrent use; see its documentation for the lock contract.
//
// # Subject levels
//
// A subject is split on '/' into levels; the empty subject is one empty level
// and `a//b` has an empty middle level, as in MQTT. `+` matches exactly one
// level, empty or not; `#` (last level only) matches any number of levels,
// including none, so `42/#` matches `42` itself (MQTT 3.1.1 §4.7.1).
package route
