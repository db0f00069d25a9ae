package agent

// OriginName exposes how a domain travels in tracestate.
var OriginName = originName
