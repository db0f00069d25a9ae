module github.com/mercury-apm/mercury

go 1.26

require (
	github.com/linkedin/goavro/v2 v2.15.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/golang/snappy v0.0.1 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
)
