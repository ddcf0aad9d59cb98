<?php
// A minimal Swoole HTTP server for bluegreen: one instance per colour (systemd unit shop@blue,
// shop@green), in PROCESS mode so a SIGUSR1 reload keeps client connections open.
//
// What a reload (SIGUSR1) picks up: only code loaded in onWorkerStart — app.php below. This file,
// $server->set() settings, PHP, Swoole and extension versions stay as they were: change those
// with `bluegreen deploy` (a new colour), not `bluegreen reload`.

$colour = getenv('COLOUR') ?: 'blue';
$port = $colour === 'green' ? 9502 : 9501;

$server = new Swoole\Http\Server('127.0.0.1', $port, SWOOLE_PROCESS);
$server->set([
    'worker_num' => 4,
    'task_worker_num' => 2,
    'pid_file' => "/run/shop/{$colour}.pid",   // the master's pid: app.pid_file in the inventory
    'reload_async' => true,                     // workers finish their requests on SIGUSR1
    'max_wait_time' => 3,                       // then are killed: keep app.reload_timeout above
    'log_file' => "/var/log/shop/{$colour}.log",
]);

$server->on('WorkerStart', function (Swoole\Http\Server $server, int $workerId) {
    // Loaded per worker, so a reload replaces it with the code now on disk.
    require __DIR__ . '/app.php';
    $GLOBALS['worker_started'] = time();
});

$server->on('Request', function (Swoole\Http\Request $request, Swoole\Http\Response $response) {
    handle_request($request, $response);
});

$server->on('Task', function (Swoole\Http\Server $server, int $taskId, int $from, $data) {
    return $data;
});

$server->start();
