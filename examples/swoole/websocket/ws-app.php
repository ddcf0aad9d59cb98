<?php
// The reloadable part of ws-server.php: loaded in onWorkerStart through the colour's pointer, so
// `bluegreen reload` (SIGUSR1) picks up changes.
//
// WebSocket (any path): on open the server sends {"type":"hello","release":…,"colour":…}; every
// text message is echoed back as {"type":"echo","data":<the message>,"release":…,"colour":…}.
// A client that numbers its messages (e.g. {"seq":42}) knows from the echoes what the server
// processed, and resends the rest after a reconnect (see README.md).
// HTTP: / (`release <id> (<colour>) pid <worker>`, plus an X-Release header) and /health
// ({"status":"ok",…}; 503 {"status":"draining",…} once the server drains).

function release_id(): string
{
    static $release;  // read once per worker: a reload reads it again
    return $release ??= trim((string) @file_get_contents(__DIR__ . '/RELEASE')) ?: 'unknown';
}

function colour(): string
{
    return getenv('COLOUR') ?: 'blue';
}

/** The upgrade: refused (503) while the server drains, else RFC 6455's handshake. */
function ws_handshake(Swoole\WebSocket\Server $server, Swoole\Atomic $draining,
                      Swoole\Http\Request $request, Swoole\Http\Response $response): bool
{
    $key = $request->header['sec-websocket-key'] ?? '';
    if (!preg_match('#^[+/0-9A-Za-z]{21}[AQgw]==$#', $key)
        || ($request->header['sec-websocket-version'] ?? '') !== '13') {
        $response->status(400);
        $response->end("not a WebSocket upgrade\n");
        return false;
    }
    if ($draining->get()) {
        // a balancer (proxy_next_upstream http_503) or the client goes elsewhere
        $response->status(503);
        $response->header('Retry-After', '1');
        $response->header('X-Release', release_id());
        $response->end("draining: reconnect elsewhere\n");
        return false;
    }
    $response->status(101);
    $response->header('Upgrade', 'websocket');
    $response->header('Connection', 'Upgrade');
    $response->header('Sec-WebSocket-Accept',
        base64_encode(sha1($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11', true)));
    $response->header('X-Release', release_id());
    $response->end();
    $fd = $request->fd;
    // onHandShake replaces onOpen: greet once the upgrade is through. A drain that started while
    // this upgrade completed closes it here (the master's sweep catches what slips by).
    Swoole\Event::defer(function () use ($server, $draining, $fd) {
        if ($draining->get()) {
            $server->disconnect($fd, 1001, 'going away');
            return;
        }
        $server->push($fd, json_encode(['type' => 'hello', 'release' => release_id(),
                                        'colour' => colour()]));
    });
    return true;
}

function ws_message(Swoole\WebSocket\Server $server, Swoole\WebSocket\Frame $frame): void
{
    if ($frame->opcode !== WEBSOCKET_OPCODE_TEXT) {
        return;
    }
    $server->push($frame->fd, json_encode(['type' => 'echo', 'data' => $frame->data,
                                           'release' => release_id(), 'colour' => colour()]));
}

function http_request(Swoole\WebSocket\Server $server, Swoole\Atomic $draining,
                      Swoole\Http\Request $request, Swoole\Http\Response $response): void
{
    $release = release_id();
    $response->header('X-Release', $release);
    if ($request->server['request_uri'] === '/health') {
        $response->header('Content-Type', 'application/json');
        $response->status($draining->get() ? 503 : 200);
        $response->end(json_encode([
            'status' => $draining->get() ? 'draining' : 'ok',
            'release' => $release,
            'colour' => colour(),
            'worker_pid' => getmypid(),
            'worker_started' => $GLOBALS['worker_started'] ?? null,
        ]));
        return;
    }
    $response->header('Content-Type', 'text/plain');
    $response->end("release {$release} (" . colour() . ") pid " . getmypid() . "\n");
}
