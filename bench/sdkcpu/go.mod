module github.com/ferrymq/ferry/bench/sdkcpu

go 1.26.8

require github.com/ferrymq/ferry v0.0.0

require (
	golang.org/x/crypto v0.57.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace github.com/ferrymq/ferry => ../..
