// berth's edit of an app's wp-config.php for its object cache. berth runs it with
// php-cli as the app's own user (setpriv, never root): the file is the user's, and
// whatever they made of it (a link, a fifo, a directory) is reached with their
// rights alone. Its input comes as JSON on stdin (`$in`): the file, the marker
// lines, and the block to hold between them (null: none). No secret is in it: the
// block only loads the credentials file. Its last line on stdout is a JSON report.
error_reporting(E_ALL & ~E_DEPRECATED & ~E_NOTICE & ~E_WARNING);
ini_set('display_errors', 'stderr');

function berth_fail($message) {
    fwrite(STDERR, "berth: $message\n");
    exit(1);
}

$path = $in['path'];
clearstatcache();
if (!file_exists($path) && !is_link($path)) {
    echo json_encode(['ok' => true, 'changed' => false, 'missing' => true]), "\n";
    exit(0);
}
if (!is_file($path) || filesize($path) > 1048576) {
    berth_fail("$path is not a wp-config.php berth can edit");
}
$text = file_get_contents($path);
if ($text === false) {
    berth_fail("cannot read $path");
}
$kept = [];
$inside = false;
foreach (explode("\n", $text) as $line) {
    if (trim($line) === $in['begin']) {
        $inside = true;
    } elseif ($inside) {
        $inside = trim($line) !== $in['end'];
    } else {
        $kept[] = $line;
    }
}
if ($in['block'] !== null) {
    $at = null;
    foreach ($kept as $i => $line) {
        if (strpos($line, "That's all, stop editing") !== false
            || preg_match('/^\s*require_once\s+ABSPATH\s*\.\s*[\'"]wp-settings\.php/', $line)) {
            $at = $i;
            break;
        }
    }
    if ($at === null) {
        berth_fail("$path has no line that loads wp-settings.php; add the object cache's lines by hand");
    }
    array_splice($kept, $at, 0, explode("\n", $in['block']));
}
$new = implode("\n", $kept);
if ($new === $text) {
    echo json_encode(['ok' => true, 'changed' => false]), "\n";
    exit(0);
}
$aside = dirname($path) . '/.wp-config.php.berth-cache';
umask(077);
if (file_exists($aside) || is_link($aside)) {
    unlink($aside);
}
$file = fopen($aside, 'x');
if ($file === false || fwrite($file, $new) !== strlen($new) || !fclose($file)) {
    berth_fail("cannot write $aside");
}
if (!chmod($aside, fileperms($path) & 0777) || !rename($aside, $path)) {
    berth_fail("cannot put $path in place");
}
echo json_encode(['ok' => true, 'changed' => true]), "\n";
