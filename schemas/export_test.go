package schemas

// Exported for the external tests: goavro's native form of a record and back.
var (
	ToNative   = toNative
	FromNative = fromNative
)
