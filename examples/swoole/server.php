<?php
// A Swoole HTTP server for bluegreen: one instance per colour (systemd unit shop@blue, shop@green),
// in PROCESS mode so a SIGUSR1 reload keeps client connections open.
//
// Configured by its environment, which the inventory's start command writes (see inventory.yml):
//   COLOUR                blue or green; names the processes          default blue
//   SHOP_ADDRESS          address to listen on                        default 0.0.0.0
//   SHOP_PORT             the colour's port                           default 9501 (green 9502)
//   SHOP_PID_FILE         the master's pid: app.pid_file              default /run/shop/<colour>.pid
//   SHOP_LOG_FILE         Swoole's log                                default stderr (the journal)
//   SHOP_DAEMONIZE        1: fork into the background (no systemd)    default 0
//   SHOP_WORKER_NUM, SHOP_TASK_WORKER_NUM                             default 4, 2
//   SHOP_HEARTBEAT        1: also run a user process (addProcess)     default 0
//   BLUEGREEN_CURRENT     the colour's pointer, where app.php is loaded from on every worker
//                         start                                       default this script's dir
//
// What a reload (SIGUSR1) picks up: only code loaded in onWorkerStart — app.php below. This file,
// $server->set() settings, PHP, Swoole and extension versions stay as they were: change those
// with `bluegreen deploy` (a new colour), not `bluegreen reload`.

$colour = getenv('COLOUR') ?: 'blue';
$name = "shop-{$colour}";
$workerNum = (int) (getenv('SHOP_WORKER_NUM') ?: 4);

$server = new Swoole\Http\Server(
    getenv('SHOP_ADDRESS') ?: '0.0.0.0',
    (int) (getenv('SHOP_PORT') ?: ($colour === 'green' ? 9502 : 9501)),
    SWOOLE_PROCESS,
);
$settings = [
    'worker_num' => $workerNum,
    'task_worker_num' => (int) (getenv('SHOP_TASK_WORKER_NUM') ?: 2),
    'pid_file' => getenv('SHOP_PID_FILE') ?: "/run/shop/{$colour}.pid",
    'daemonize' => getenv('SHOP_DAEMONIZE') === '1',
    'reload_async' => true,   // SIGUSR1: workers finish their requests, then are replaced
    'max_wait_time' => 3,     // a worker still busy after this is killed: keep it above the
                              // slowest request, and app.reload_timeout above it
];
if (getenv('SHOP_LOG_FILE')) {
    $settings['log_file'] = getenv('SHOP_LOG_FILE');
}
$server->set($settings);

// Process names, as `ps -o args=` shows them; the inventory's app.worker_pattern matches workers
// and task workers, never the master, the manager or user processes.
$server->on('Start', function () use ($name) {
    swoole_set_process_name("{$name}: master");
});
$server->on('ManagerStart', function () use ($name) {
    swoole_set_process_name("{$name}: manager");
});

// The colour's pointer: bluegreen passes it as BLUEGREEN_CURRENT; else the path this script was
// started by (the unit starts /srv/shop/<colour>/server.php, through the pointer).
$code = getenv('BLUEGREEN_CURRENT') ?: dirname($_SERVER['SCRIPT_FILENAME']);

$server->on('WorkerStart', function (Swoole\Http\Server $server, int $workerId)
    use ($name, $code) {
    swoole_set_process_name($server->taskworker
        ? "{$name}: task #" . ($workerId - $server->setting['worker_num'])
        : "{$name}: worker #{$workerId}");
    // Loaded per worker, through the colour's pointer ({{ app_root }}/<colour>, which
    // `bluegreen reload --source` moves to the new release before its signal): not __DIR__,
    // which PHP resolves to the release the master started from. The realpath cache, inherited
    // from the master, still maps the pointer to that release until cleared.
    clearstatcache(true);
    require $code . '/app.php';
    $GLOBALS['worker_started'] = time();
});

$server->on('WorkerExit', function () {
    // With reload_async a worker exits once its event loop is empty: timers left running would
    // keep it alive until max_wait_time.
    Swoole\Timer::clearAll();
});

$server->on('Request', function (Swoole\Http\Request $request, Swoole\Http\Response $response)
    use ($server) {
    handle_request($server, $request, $response);
});

$server->on('Task', function (Swoole\Http\Server $server, int $taskId, int $fromWorker, $data) {
    return handle_task($data);
});

$server->on('Finish', function (Swoole\Http\Server $server, int $taskId, $result) {
    // A task's return value comes back here, in the worker that sent it; without this handler
    // Swoole logs a warning for every task that returns a value.
});

if (getenv('SHOP_HEARTBEAT') === '1') {
    // A user process: started and restarted by the manager, not replaced by a reload (SIGUSR1),
    // and named so that app.worker_pattern does not match it.
    $server->addProcess(new Swoole\Process(function () use ($name) {
        swoole_set_process_name("{$name}: heartbeat");
        while (true) {
            sleep(60);
            error_log("{$name}: heartbeat");
        }
    }));
}

$server->start();
