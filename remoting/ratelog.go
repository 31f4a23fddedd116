package remoting

import "time"

// logEvery is how often a rate-limited kind of log line may be written, so
// that a flood of bad clients does not flood the log.
const logEvery = 10 * time.Second
