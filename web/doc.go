// Package web embeds the live scoreboard page and the browser client (crease-client.js)
// that the gateway serves at / on its HTTP listener. The JavaScript is tested with Node's
// built-in runner (node --test web/); see README.md for the client API.
package web
