// berth's WordPress installer. berth runs it with php-cli as the app's own user
// (setpriv, never root), so whatever it touches is reached with that user's rights
// alone. Its input, the secrets with it, comes as JSON on stdin (`$in`), never in
// argv or the environment. It copies the WordPress tree (following the source's
// links: Debian's tree links into /usr/share/javascript and /usr/share/php), writes
// wp-config.php (0600, renamed into place), then runs wp_install() offline. Its
// last line on stdout is a JSON report; anything else it prints is WordPress's.
error_reporting(E_ALL & ~E_DEPRECATED & ~E_NOTICE & ~E_WARNING);
ini_set('display_errors', 'stderr');
umask(027);

function berth_fail($message) {
    fwrite(STDERR, "berth installer: $message\n");
    exit(1);
}

/* Copies $from into $to: directories 0750, files 0640; $skip names are left out. */
function berth_copy($from, $to, $skip) {
    $names = scandir($from);
    if ($names === false) {
        berth_fail("cannot read $from");
    }
    foreach ($names as $name) {
        if ($name === '.' || $name === '..' || in_array($name, $skip, true)) {
            continue;
        }
        $src = "$from/$name";
        $dst = "$to/$name";
        if (is_link($dst)) {
            berth_fail("$dst is a symbolic link");
        }
        if (is_dir($src)) {
            if (!is_dir($dst) && !mkdir($dst, 0750)) {
                berth_fail("cannot make $dst");
            }
            berth_copy($src, $dst, []);
        } elseif (is_file($src)) {
            if (!copy($src, $dst)) {
                berth_fail("cannot write $dst");
            }
        }
    }
}

$target = $in['target'];
if (!is_dir($target) || is_link($target)) {
    berth_fail("$target is not a directory");
}
berth_copy($in['source'], $target, $in['skip']);

$config = "$target/wp-config.php";
$aside = "$target/.wp-config.php.berth";
umask(077);
if (file_exists($aside) || is_link($aside)) {
    unlink($aside);
}
$file = fopen($aside, 'x');
if ($file === false || fwrite($file, $in['config']) !== strlen($in['config']) || !fclose($file)) {
    berth_fail("cannot write $aside");
}
if (!chmod($aside, 0600) || !rename($aside, $config)) {
    berth_fail("cannot put $config in place");
}
umask(027);

$_SERVER['HTTP_HOST'] = $in['host'];
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['SERVER_PROTOCOL'] = 'HTTP/1.1';
$_SERVER['REQUEST_METHOD'] = 'GET';
define('WP_INSTALLING', true);
/* Pluggable: no mail to the admin from an install (the server may have no MTA). */
function wp_new_blog_notification($title, $url, $user_id, $password) {
}
chdir($target);
require $target . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
/* Offline: no request leaves (WordPress would probe the site for pretty permalinks). */
add_filter('pre_http_request', function () {
    return new WP_Error('berth_offline', 'offline install');
}, 1);

$installed = false;
if (!is_blog_installed()) {
    $result = wp_install($in['title'], $in['user'], $in['email'], true, '', wp_slash($in['password']));
    if (is_wp_error($result) || empty($result['user_id'])) {
        berth_fail('wp_install did not create the admin');
    }
    $installed = true;
}
update_option('siteurl', $in['url']);
update_option('home', $in['url']);
echo "\n", json_encode(['ok' => true, 'installed' => $installed, 'version' => $GLOBALS['wp_version']]), "\n";
