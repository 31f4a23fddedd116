package native

import (
	"strconv"

	"github.com/ferrymq/ferry/remoting"
)

// queryByKey serves QUERY_MESSAGE: the newest messages of a topic carrying
// a key, at most maxNum, stored between beginTimestamp and endTimestamp (ms).
func (s *Server) queryByKey(req *remoting.Command) *remoting.Command {
	topic, key := req.Ext("topic"), req.Ext("key")
	maxNum, _ := strconv.Atoi(req.Ext("maxNum"))
	maxNum = max(1, min(maxNum, 256))
	begin, _ := strconv.ParseInt(req.Ext("beginTimestamp"), 10, 64)
	end, err := strconv.ParseInt(req.Ext("endTimestamp"), 10, 64)
	if err != nil || end <= 0 {
		end = 1 << 62
	}
	found, err := s.b.MessagesByKey(key, maxNum*4)
	if err != nil {
		return req.Response(remoting.SystemError, err.Error())
	}
	var body []byte
	host := s.host()
	n := 0
	for i := range found {
		m := &found[i]
		ms := m.StoreTime / 1e6
		if m.Topic != topic || ms < begin || ms > end || n == maxNum {
			continue
		}
		body = appendMessage(body, m, host)
		n++
	}
	if n == 0 {
		return req.Response(remoting.QueryNotFound, "no message with key "+strconv.Quote(key)+" in "+topic)
	}
	resp := req.Response(remoting.Success, "")
	resp.Set("indexLastUpdateTimestamp", "0")
	resp.Set("indexLastUpdatePhyoffset", "0")
	resp.Body = body
	return resp
}
