// Package examples holds publishers in other languages and the tests (package
// examples_test) that run them against a real Redis, a real gateway and a real client.
package examples
