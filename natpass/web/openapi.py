"""The OpenAPI 3.1 description served at ``/api/openapi.json`` (written by hand: the API is small)."""

from __future__ import annotations

from typing import Any


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema or {"type": "object"}}}}


REFUSALS = {
    "401": _error("no session or API token, a wrong token, or an expired session"),
    "403": _error("missing or wrong CSRF token (sessions), or a foreign or null Origin"),
    "421": _error("a Host that is not an IP address, localhost or the router's name"),
    "429": _error("too many failed logins or tokens from this address (see Retry-After)"),
}
CHANGE: dict[str, Any] = {"security": [{"bearer": []}, {"session": [], "csrf": []}]}
READ: dict[str, Any] = {"security": [{"bearer": []}, {"session": []}]}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "natpass admin API", "version": "1",
             "description": "Read and steer a running natpass router. Log in with POST /api/login (a session "
                            "cookie; send its CSRF token as X-CSRF-Token on every change) or send an API token "
                            "as Authorization: Bearer."},
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API token (natpass token add NAME)"},
            "session": {"type": "apiKey", "in": "cookie", "name": "natpass_session"},
            "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error", "status"],
                      "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
            "Flow": {"type": "object", "properties": {
                "proto": {"type": "string"}, "lan": {"type": "string"}, "wan": {"type": "string"},
                "remote": {"type": "string"}, "direction": {"type": "string"},
                "state": {"type": "string", "description": "named TCP state (established, opening, closing, "
                                                           "reset) or active"},
                "idle_s": {"type": ["number", "null"]}, "helper": {"type": ["string", "null"]}}},
            "Forward": {"type": "object", "properties": {
                "proto": {"enum": ["tcp", "udp"]}, "port": {"type": "integer"}, "to": {"type": "string"},
                "wan_address": {"type": ["string", "null"]}, "comment": {"type": ["string", "null"]}}},
            "ForwardResult": {"type": "object", "properties": {
                "action": {"enum": ["added", "removed"]}, "forward": {"$ref": "#/components/schemas/Forward"},
                "saved": {"type": "boolean"}, "save_error": {"type": ["string", "null"]},
                "version": {"type": ["integer", "null"], "description": "the history version now running"}}},
            "ConfigChange": {"type": "object", "properties": {
                "summary": {"type": "string"},
                "torn_down": {"type": "object", "additionalProperties": {"type": "integer"},
                              "description": "tunnels closed per switch"},
                "version": {"type": ["integer", "null"], "description": "the history version now running"}}},
        },
    },
    "paths": {
        "/api/health": {"get": {"summary": "Health probe (no login): 200 when the router answers",
                                "security": [], "responses": {"200": _json("ok"), "503": _json("no answer")}}},
        "/api/login": {"post": {
            "summary": "Log in with the admin password", "security": [],
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "required": ["password"], "properties": {"password": {"type": "string"}}}}}},
            "responses": {"200": _json("session cookie set; the CSRF token to send on changes", {
                "type": "object", "properties": {"csrf": {"type": "string"}, "idle_timeout": {"type": "number"},
                                                 "lifetime": {"type": "number"}}}),
                          "401": _error("wrong password"), "429": REFUSALS["429"], "403": REFUSALS["403"]}}},
        "/api/logout": {"post": {"summary": "End the session", **CHANGE,
                                 "responses": {"200": _json("logged out"), **REFUSALS}}},
        "/api/status": {"get": {"summary": "The router's status: uptime, interfaces, flows, counters, drops, "
                                           "switches, helpers with live tunnels", **READ,
                                "responses": {"200": _json("status"), **REFUSALS}}},
        "/api/flows": {"get": {
            "summary": "Connections, filtered, sorted and paged", **READ,
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
                {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {"name": "proto", "in": "query", "schema": {"type": "string"}, "description": "tcp, udp, icmp, gre, esp"},
                {"name": "lan", "in": "query", "schema": {"type": "string"}, "description": "a LAN host's address"},
                {"name": "state", "in": "query", "schema": {"type": "string"}},
                {"name": "sort", "in": "query", "schema": {"enum": ["proto", "lan", "remote", "wan", "state", "idle"]}},
                {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}}],
            "responses": {"200": _json("flows", {"type": "object", "properties": {
                "flows": {"type": "array", "items": {"$ref": "#/components/schemas/Flow"}},
                "total": {"type": "integer"}, "limit": {"type": "integer"}, "page": {"type": "integer"}}}),
                "400": _error("bad query"), **REFUSALS}}},
        "/api/log": {"get": {"summary": "Admin log, newest first (logins, refusals, switches, reloads, tunnels)",
                             **READ, "responses": {"200": _json("log"), **REFUSALS}}},
        "/api/switch/{name}": {"post": {
            "summary": "Turn a passthrough switch on or off now and save it in the config file", **CHANGE,
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"enum": ["pptp", "ipsec", "l2tp"]}}],
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "required": ["on"],
                "properties": {"on": {"type": "boolean"},
                               "confirm": {"type": "boolean", "description": "required to turn PPTP on"}}}}}},
            "responses": {"200": _json("applied", {"type": "object", "properties": {
                "switch": {"type": "string"}, "on": {"type": "boolean"}, "torn_down": {"type": "integer"},
                "saved": {"type": "boolean"}, "save_error": {"type": ["string", "null"]},
                "exposure": {"type": ["string", "null"]}, "undo": {"type": "object"}}}),
                "400": _error("bad body"), "404": _error("unknown switch"),
                "409": _error("opens an exposure: repeat with confirm (the answer names the exposure)"),
                "413": _error("body too large"), **REFUSALS}}},
        "/api/reload": {"post": {"summary": "Re-read the config file", **CHANGE,
                                 "responses": {"200": _json("reloaded"),
                                               "422": _error("config refused; the running one is kept"),
                                               **REFUSALS}}},
        "/api/forwards": {
            "get": {"summary": "The port forwards running now", **READ,
                    "responses": {"200": _json("forwards", {"type": "object", "properties": {"forwards": {
                        "type": "array", "items": {"$ref": "#/components/schemas/Forward"}}}}), **REFUSALS}},
            "post": {"summary": "Add a port forward now and save it in the config file", **CHANGE,
                     "requestBody": {"content": {"application/json": {"schema": {
                         "type": "object", "required": ["proto", "port", "to"],
                         "properties": {"proto": {"enum": ["tcp", "udp"]},
                                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                        "to": {"type": "string", "description": "ADDRESS or ADDRESS:PORT on the LAN"},
                                        "wan_address": {"type": "string", "description": "only on this WAN address"},
                                        "comment": {"type": "string"},
                                        "runtime_only": {"type": "boolean", "description": "do not save"}}}}}},
                     "responses": {"201": _json("added", {"$ref": "#/components/schemas/ForwardResult"}),
                                   "400": _error("bad body"),
                                   "409": _error("the WAN port is taken (another forward, a passthrough helper's "
                                                 "port, a connection holding it) or, with the hybrid datapath, "
                                                 "only a restart can apply it"),
                                   "422": _error("invalid forward (protocol, port, LAN address), with the reason"),
                                   **REFUSALS}}},
        "/api/forwards/{proto}/{port}": {"delete": {
            "summary": "Remove a port forward now and from the config file", **CHANGE,
            "parameters": [{"name": "proto", "in": "path", "required": True, "schema": {"enum": ["tcp", "udp"]}},
                           {"name": "port", "in": "path", "required": True, "schema": {"type": "integer"}},
                           {"name": "wan_address", "in": "query", "schema": {"type": "string"}},
                           {"name": "runtime_only", "in": "query", "schema": {"enum": ["1", "true"]}}],
            "responses": {"200": _json("removed", {"$ref": "#/components/schemas/ForwardResult"}),
                          "404": _error("no such forward"),
                          "409": _error("with the hybrid datapath only a restart can apply it"), **REFUSALS}}},
        "/api/tokens": {
            "get": {"summary": "API tokens (names and dates; never the secrets)", **READ,
                    "responses": {"200": _json("tokens"), **REFUSALS}},
            "post": {"summary": "Create a named API token (the secret is in this answer only)", **CHANGE,
                     "requestBody": {"content": {"application/json": {"schema": {
                         "type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}},
                     "responses": {"201": _json("created"), "400": _error("bad or taken name"), **REFUSALS}}},
        "/api/tokens/{name}": {"delete": {
            "summary": "Revoke an API token", **CHANGE,
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json("revoked"), "404": _error("no such token"), **REFUSALS}}},
        "/api/config/backup": {"get": {
            "summary": "The config file as a checked backup (a comment header with its SHA-256), as an attachment",
            **READ, "responses": {"200": {"description": "the backup", "content": {"application/toml": {
                "schema": {"type": "string"}}}}, **REFUSALS}}},
        "/api/config/history": {"get": {
            "summary": "Kept config versions, newest first (the newest is the one running)", **READ,
            "responses": {"200": _json("versions", {"type": "object", "properties": {"versions": {
                "type": "array", "items": {"type": "object", "properties": {
                    "number": {"type": "integer"}, "created": {"type": "string"}, "who": {"type": "string"},
                    "summary": {"type": "string"}}}}}}), **REFUSALS}}},
        "/api/config/restore": {"post": {
            "summary": "Check a backup (or plain config file) whole, then make it the config and apply it", **CHANGE,
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "required": ["backup"],
                "properties": {"backup": {"type": "string", "description": "the file's text"},
                               "name": {"type": "string", "description": "its file name, used in errors"}}}}}},
            "responses": {"200": _json("restored", {"$ref": "#/components/schemas/ConfigChange"}),
                          "400": _error("bad body"), "413": _error("backup too large"),
                          "422": _error("refused whole (damaged, edited, invalid, or needs a restart), with "
                                        "path, line and message; the running router is untouched"),
                          **REFUSALS}}},
        "/api/config/rollback": {"post": {
            "summary": "Return to a kept version (default: the one before the newest)", **CHANGE,
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "properties": {"number": {"type": "integer"}}}}}},
            "responses": {"200": _json("rolled back", {"$ref": "#/components/schemas/ConfigChange"}),
                          "400": _error("bad body"), "404": _error("no such version"),
                          "422": _error("that version is refused (needs a restart); nothing changed"),
                          **REFUSALS}}},
        "/api/diagnose": {"post": {
            "summary": "Diagnose an uploaded capture (the body: a pcap or pcapng file)", **CHANGE,
            "parameters": [
                {"name": "name", "in": "query", "schema": {"type": "string"}, "description": "file name for the report"},
                {"name": "vantage", "in": "query", "schema": {"enum": ["client", "router-wan", "server"]},
                 "description": "where it was taken (default: worked out from the capture)"}],
            "requestBody": {"content": {"application/vnd.tcpdump.pcap": {"schema": {"type": "string",
                                                                                    "format": "binary"}}}},
            "responses": {"200": _json("the report, as natpass diagnose --json"),
                          "413": _error("capture larger than the bound (20 MiB by default)"),
                          "415": _error("not a pcap or pcapng file (magic number)"),
                          "422": _error("a malformed capture or a bad vantage, with the reason"),
                          "503": _error("a diagnosis is already running"), **REFUSALS}}},
        "/api/diagnose/live": {"post": {
            "summary": "Capture on the router's LAN and WAN interfaces for N seconds, then diagnose both sides "
                       "with the router's drop counters of that window", **CHANGE,
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "properties": {"seconds": {"type": "integer", "minimum": 3, "maximum": 120,
                                                             "default": 30}}}}}},
            "responses": {"200": _json("the report, as natpass diagnose --live --json"),
                          "422": _error("seconds out of range, or the capture could not run (the reason)"),
                          "503": _error("a diagnosis is already running"), **REFUSALS}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (an API token or session, or loopback only: "
                                        "[router] metrics_access)", **READ,
                             "responses": {"200": {"description": "Prometheus text format"}, **REFUSALS}}},
    },
}
