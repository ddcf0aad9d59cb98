<?php
// The reloadable part: loaded in onWorkerStart, so `bluegreen reload` (SIGUSR1) picks up changes.

function handle_request(Swoole\Http\Request $request, Swoole\Http\Response $response): void
{
    $release = trim((string) @file_get_contents(__DIR__ . '/RELEASE')) ?: 'unknown';
    $colour = getenv('COLOUR') ?: 'blue';
    $response->header('X-Release', $release);
    if ($request->server['request_uri'] === '/health') {
        $response->header('Content-Type', 'application/json');
        $response->end(json_encode([
            'status' => 'ok',
            'release' => $release,
            'colour' => $colour,
            'worker_pid' => getmypid(),
            'worker_started' => $GLOBALS['worker_started'] ?? null,
        ]));
        return;
    }
    $response->end("release {$release} ({$colour})\n");
}
