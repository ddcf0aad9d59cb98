<?php
// A Swoole WebSocket server for bluegreen: the WebSocket variant of ../server.php, one instance
// per colour, in PROCESS mode (the master's reactor threads own the connections, so a SIGUSR1
// reload replaces workers without closing a WebSocket).
//
// Configured by its environment, like ../server.php:
//   COLOUR                blue or green; names the processes          default blue
//   SHOP_ADDRESS          address to listen on                        default 0.0.0.0
//   SHOP_PORT             the colour's port                           default 9501 (green 9502)
//   SHOP_PID_FILE         the master's pid: app.pid_file              default /run/shop/<colour>.pid
//   SHOP_LOG_FILE         Swoole's log (and this file's messages)     default stderr (the journal)
//   SHOP_DAEMONIZE        1: fork into the background (no systemd)    default 0
//   SHOP_WORKER_NUM                                                   default 4
//   BLUEGREEN_CURRENT     the colour's pointer, where ws-app.php is loaded from on every worker
//                         start                                       default this script's dir
//
// Drain (what bluegreen's app.drain triggers before `retire` or a deploy stops the colour):
// SIGURG to the master — `kill -s URG "$(cat <pid file>)"`, as the server's user — makes it
//   1. refuse every new WebSocket upgrade from then on (503 with Retry-After: 1, so a client or a
//      balancer tries elsewhere) and answer /health with 503 (no rollback or switch flips back
//      to a drained colour: restart it first);
//   2. send every WebSocket connection a close frame with code 1001 (going away), then sweep
//      again every second for upgrades that were completing meanwhile.
// Plain HTTP keeps being served; a drained server stays drained until it stops. SIGURG is
// ignored by default, so sending it to a release without this handler does nothing at all, and
// only root or the server's own user may send it (the sudoers line `app.signal` already needs).
// A plain stop (SIGTERM) closes every WebSocket with 1001 too, in BeforeShutdown.

$colour = getenv('COLOUR') ?: 'blue';
$name = "shop-{$colour}";

$server = new Swoole\WebSocket\Server(
    getenv('SHOP_ADDRESS') ?: '0.0.0.0',
    (int) (getenv('SHOP_PORT') ?: ($colour === 'green' ? 9502 : 9501)),
    SWOOLE_PROCESS,
);
$settings = [
    'worker_num' => (int) (getenv('SHOP_WORKER_NUM') ?: 4),
    'pid_file' => getenv('SHOP_PID_FILE') ?: "/run/shop/{$colour}.pid",
    'daemonize' => getenv('SHOP_DAEMONIZE') === '1',
    'reload_async' => true,
    'max_wait_time' => 3,
];
if (getenv('SHOP_LOG_FILE')) {
    $settings['log_file'] = getenv('SHOP_LOG_FILE');
}
$server->set($settings);

// Shared by the master and every worker (created before start(), so it lives in shared memory):
// 1 once the server drains. Workers read it in the handshake and in /health.
$draining = new Swoole\Atomic(0);

// Close every established WebSocket with 1001; returns how many. Called in the master (the
// drain signal, BeforeShutdown), which in PROCESS mode holds every connection.
$goAway = function (Swoole\WebSocket\Server $server): int {
    $closed = 0;
    foreach ($server->connections as $fd) {
        if (!$server->isEstablished($fd)) {
            continue;
        }
        swoole_clear_error();
        // disconnect() sends the close frame, then closes the session. A client quick to answer
        // the frame and hang up leaves no session to close by then: closed all the same.
        if ($server->disconnect($fd, 1001, 'going away')
            || swoole_last_error() === SWOOLE_ERROR_SESSION_NOT_EXIST) {
            $closed++;
        }
    }
    return $closed;
};

$sweeper = null;  // the master's timer sweeping for late upgrades while it drains
$server->on('Start', function (Swoole\WebSocket\Server $server)
    use ($name, $draining, $goAway, &$sweeper) {
    swoole_set_process_name("{$name}: master");
    // SIGURG: ignored by default, unused by Swoole (which keeps SIGWINCH for itself)
    Swoole\Process::signal(SIGURG, function ()
        use ($server, $name, $draining, $goAway, &$sweeper) {
        if ($draining->cmpset(0, 1)) {
            error_log("{$name}: draining: refusing new WebSocket upgrades");
            // upgrades that were completing while we swept: caught by the next sweep
            $sweeper = Swoole\Timer::tick(1000, function () use ($server, $name, $goAway) {
                if ($closed = $goAway($server)) {
                    error_log("{$name}: draining: {$closed} late WebSocket connection(s) closed");
                }
            });
        }
        error_log("{$name}: draining: " . $goAway($server)
                  . " WebSocket connection(s) closed with 1001");
    });
});
$server->on('ManagerStart', function () use ($name) {
    swoole_set_process_name("{$name}: manager");
});
// A plain stop (SIGTERM, systemctl stop): tell the clients to go, with a close frame, before
// the reactor goes away; in WorkerStop it is too late (clients see 1006, no close frame).
$server->on('BeforeShutdown', function (Swoole\WebSocket\Server $server)
    use ($name, $draining, $goAway, &$sweeper) {
    $draining->set(1);
    if ($sweeper !== null) {
        Swoole\Timer::clear($sweeper);  // a timer left running keeps the master from exiting
    }
    error_log("{$name}: shutting down: " . $goAway($server)
              . " WebSocket connection(s) closed with 1001");
});

$code = getenv('BLUEGREEN_CURRENT') ?: dirname($_SERVER['SCRIPT_FILENAME']);

$server->on('WorkerStart', function (Swoole\WebSocket\Server $server, int $workerId)
    use ($name, $code) {
    swoole_set_process_name("{$name}: worker #{$workerId}");
    // Loaded per worker through the colour's pointer, as in ../server.php: `bluegreen reload`
    // picks up a new ws-app.php.
    clearstatcache(true);
    require $code . '/ws-app.php';
    $GLOBALS['worker_started'] = time();
});

$server->on('WorkerExit', function () {
    Swoole\Timer::clearAll();
});

$server->on('HandShake', function (Swoole\Http\Request $request, Swoole\Http\Response $response)
    use ($server, $draining) {
    return ws_handshake($server, $draining, $request, $response);
});

$server->on('Message', function (Swoole\WebSocket\Server $server, Swoole\WebSocket\Frame $frame) {
    ws_message($server, $frame);
});

$server->on('Request', function (Swoole\Http\Request $request, Swoole\Http\Response $response)
    use ($server, $draining) {
    http_request($server, $draining, $request, $response);
});

$server->start();
