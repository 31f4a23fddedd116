// Package sql92 parses and evaluates RocketMQ's SQL92 message selectors
// (`MessageSelector.bySql` in RocketMQ's clients, expression type "SQL92"):
// boolean expressions over a message's properties, such as
//
//	a > 5 AND region IN ('eu', 'us') AND b IS NOT NULL
//
// It follows the grammar and the semantics of RocketMQ's filter module
// (SelectorParser.jj and its expression classes, taken from ActiveMQ):
//
//   - literals: strings in single quotes (” is a quote), integers (a long,
//     an optional L suffix), decimals and exponents (a double), TRUE,
//     FALSE, NULL; keywords are case-insensitive, property names are not;
//   - comparisons =, <>, <, <=, >, >=; [NOT] BETWEEN x AND y; [NOT] IN
//     ('a', …) (of string literals, on a property); IS [NOT] NULL;
//     [NOT] CONTAINS, STARTSWITH, ENDSWITH 'text'; AND, OR, NOT,
//     parentheses; unary + and -; -- and /* */ comments.
//   - NOT binds tighter than a comparison, as in RocketMQ: `NOT a = 1` is
//     `(NOT a) = 1`, never true; write `NOT (a = 1)`.
//   - a property that is missing is NULL, and a comparison with NULL is
//     unknown: the message does not match, and neither does it match the
//     comparison's NOT (`NOT (a = 1)` is unknown too); AND, OR and NOT
//     follow SQL's three-valued logic; only IS NULL is true of a missing
//     property. [NOT] CONTAINS, STARTSWITH and ENDSWITH are false on one.
//   - property values are strings; compared with a number, a value is read
//     as one (an integer literal reads it as a long, a decimal one as a
//     double); two properties compared by <, <=, >, >= are both read as
//     doubles; =, <> of two strings compare them as strings. A value that
//     cannot be read as the number it is compared with (a = 5 where a is
//     "x" or "5.5") makes the whole expression false for that message, as
//     RocketMQ's broker does with the evaluation's error.
//
// What RocketMQ refuses when the expression is compiled, Parse refuses
// too: <, <=, >, >= with a string or boolean operand; = and <> with NULL;
// IN on anything but a property; BETWEEN with constant bounds in the wrong
// order; an expression that is not boolean (`a + 1` has no +; `'x'` alone).
//
// The input is bounded: Parse refuses an expression longer than MaxLen
// bytes or nested deeper than MaxDepth, saying which limit was hit, and
// every error names its position (1-based, in characters).
package sql92
