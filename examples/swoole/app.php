<?php
// The reloadable part: loaded in onWorkerStart, so `bluegreen reload` (SIGUSR1) picks up changes.
// Routes: / (the release and colour, also in the X-Release header), /health (JSON), /task (hands
// a job to a task worker and answers at once), /slow?seconds=N (a long request, to try reloads).

function release_id(): string
{
    static $release;  // read once per worker: a reload reads it again
    return $release ??= trim((string) @file_get_contents(__DIR__ . '/RELEASE')) ?: 'unknown';
}

function handle_request(Swoole\Http\Server $server, Swoole\Http\Request $request,
                        Swoole\Http\Response $response): void
{
    $release = release_id();
    $colour = getenv('COLOUR') ?: 'blue';
    $response->header('X-Release', $release);
    switch ($request->server['request_uri']) {
        case '/health':
            $response->header('Content-Type', 'application/json');
            $response->end(json_encode([
                'status' => 'ok',
                'release' => $release,
                'colour' => $colour,
                'worker_pid' => getmypid(),
                'worker_started' => $GLOBALS['worker_started'] ?? null,
            ]));
            return;
        case '/slow':
            Swoole\Coroutine::sleep(min((float) ($request->get['seconds'] ?? 2), 60));
            $response->header('Content-Type', 'text/plain');
            $response->end("slow response from release {$release} ({$colour})\n");
            return;
        case '/task':
            $response->header('Content-Type', 'text/plain');
            $response->end($server->task(['release' => $release]) === false
                ? "no task worker free\n" : "task queued\n");
            return;
        default:
            $response->header('Content-Type', 'text/plain');
            $response->end("release {$release} ({$colour}) pid " . getmypid() . "\n");
    }
}

function handle_task($data)
{
    return $data;
}
