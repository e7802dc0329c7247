package main

import "errors"

var (
	// errBenchrunErrorReply means the server under measurement answered a
	// load request with an error: the run measured failures, not work.
	errBenchrunErrorReply = errors.New("benchrun: error reply")

	// errBenchrunUnexpectedReply means a reply of the wrong type for its
	// command (a GET answered with an integer, a SET with anything but +OK):
	// the connection is out of step, so the run is void.
	errBenchrunUnexpectedReply = errors.New("benchrun: unexpected reply")

	// errBenchrunLoadLine means the load generator's result line is missing
	// or malformed.
	errBenchrunLoadLine = errors.New("benchrun: bad loadgen result line")

	// errBenchrunLoadConfig means a load generator parameter is out of range.
	errBenchrunLoadConfig = errors.New("benchrun: bad loadgen parameters")
)
