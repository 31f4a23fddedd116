package native

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrymq/ferry/remoting"
)

// requestKinds are the requests counted by name (RocketMQ's RequestCode
// names, in lower case); any other code counts as "other", index 0.
var requestKinds = [...]struct {
	code int16
	name string
}{
	{0, "other"},
	{remoting.SendMessage, "send_message"},
	{remoting.SendMessageV2, "send_message_v2"},
	{remoting.SendBatchMessage, "send_batch_message"},
	{remoting.PullMessage, "pull_message"},
	{remoting.HeartBeat, "heart_beat"},
	{remoting.UnregisterClient, "unregister_client"},
	{remoting.GetConsumerListByGroup, "get_consumer_list_by_group"},
	{remoting.QueryConsumerOffset, "query_consumer_offset"},
	{remoting.UpdateConsumerOffset, "update_consumer_offset"},
	{remoting.GetMaxOffset, "get_max_offset"},
	{remoting.GetMinOffset, "get_min_offset"},
	{remoting.SearchOffsetByTimestamp, "search_offset_by_timestamp"},
	{remoting.ConsumerSendMsgBack, "consumer_send_msg_back"},
	{remoting.EndTransaction, "end_transaction"},
	{remoting.LockBatchMQ, "lock_batch_mq"},
	{remoting.UnlockBatchMQ, "unlock_batch_mq"},
	{remoting.ViewMessageByID, "view_message_by_id"},
	{remoting.QueryMessage, "query_message"},
	{remoting.GetAllSubscriptionGroupConfig, "get_all_subscriptiongroup_config"},
	{remoting.GetConsumeStats, "get_consume_stats"},
	{remoting.GetTopicStatsInfo, "get_topic_stats_info"},
	{remoting.UpdateAndCreateTopic, "update_and_create_topic"},
}

// requestIndex maps a request code to its index in requestKinds.
var requestIndex = func() map[int16]int {
	m := make(map[int16]int, len(requestKinds))
	for i, k := range requestKinds[1:] {
		m[k.code] = i + 1
	}
	return m
}()

// maxErrorCode bounds the response codes counted apart; a larger one is
// counted as code 0 ("other": 0 is success, never an error).
const maxErrorCode = 32

// requestStats count the requests served, and the error responses by
// request and response code: one atomic add per request (a batch of
// messages is one request).
type requestStats struct {
	requests [len(requestKinds)]atomic.Int64
	errors   [len(requestKinds)][maxErrorCode]atomic.Int64
}

func (st *requestStats) count(req, resp *remoting.Command) {
	i := requestIndex[req.Code] // 0 when unknown
	st.requests[i].Add(1)
	if resp == nil || !isError(resp.Code) {
		return
	}
	code := int(resp.Code)
	if code < 0 || code >= maxErrorCode {
		code = 0
	}
	st.errors[i][code].Add(1)
}

// isError reports whether a response code is an error rather than an
// answer: "nothing new yet" to a pull, or "no such key" to a query, is not.
func isError(code int16) bool {
	switch code {
	case remoting.Success, remoting.PullNotFound, remoting.PullRetryImmediately, remoting.PullOffsetMoved, remoting.QueryNotFound:
		return false
	}
	return true
}

var (
	descConnections = prometheus.NewDesc("ferry_native_connections", "Native-protocol connections open now.", nil, nil)
	descAccepted    = prometheus.NewDesc("ferry_native_connections_total", "Native-protocol connections accepted since start.", nil, nil)
	descRefused     = prometheus.NewDesc("ferry_native_connections_refused_total",
		"Native-protocol connections closed as soon as accepted: over native.max-connections.", nil, nil)
	descLimitCloses = prometheus.NewDesc("ferry_native_connections_closed_total",
		"Native-protocol connections closed by a limit (docs/native.md, Limits), by limit.", []string{"limit"}, nil)
	descAcceptErrs = prometheus.NewDesc("ferry_native_accept_errors_total",
		"Failed accepts on the native listener (out of file descriptors, say), each retried.", nil, nil)
	descRequests = prometheus.NewDesc("ferry_native_requests_total", "Native-protocol requests served, by request.", []string{"request"}, nil)
	descErrors   = prometheus.NewDesc("ferry_native_errors_total",
		"Native-protocol requests answered with an error, by request and RocketMQ response code.", []string{"request", "code"}, nil)
	descRefusedRequests = prometheus.NewDesc("ferry_native_refused_total",
		"Native-protocol requests refused NO_PERMISSION, by request and the permission that was missing (credentials: not authenticated).",
		[]string{"request", "permission"}, nil)
)

// requestName is the name a request code is counted under.
func requestName(code int16) string { return requestKinds[requestIndex[code]].name }

// Describe and Collect make the Server a prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descAccepted, descRefused, descLimitCloses, descAcceptErrs, descRequests, descErrors, descRefusedRequests} {
		ch <- d
	}
	s.timing.vec.Describe(ch)
}

func (s *Server) Collect(ch chan<- prometheus.Metric) {
	conns := s.srv.Stats()
	ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(conns.Open))
	ch <- prometheus.MustNewConstMetric(descAccepted, prometheus.CounterValue, float64(conns.Accepted))
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(conns.Refused))
	for _, l := range conns.LimitCloses() {
		ch <- prometheus.MustNewConstMetric(descLimitCloses, prometheus.CounterValue, float64(l.N), l.Limit)
	}
	ch <- prometheus.MustNewConstMetric(descAcceptErrs, prometheus.CounterValue, float64(conns.AcceptErrors))
	for i, k := range requestKinds {
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(s.stats.requests[i].Load()), k.name)
		for code := range s.stats.errors[i] {
			if n := s.stats.errors[i][code].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(n), k.name, strconv.Itoa(code))
			}
		}
	}
	s.access.refused.each(func(code int16, perm string, n int64) {
		ch <- prometheus.MustNewConstMetric(descRefusedRequests, prometheus.CounterValue, float64(n), requestName(code), perm)
	})
	s.timing.vec.Collect(ch)
}
