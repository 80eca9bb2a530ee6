<?php
/*
 * Written by berth for app {{ app }}. Mode 0600, the app's user's: PHP-FPM runs
 * the app as that user, and the web server cannot read it. berth does not write
 * it again once WordPress is installed: it is the site's own from then on.
 */
define( 'DB_NAME', {{ db_name }} );
define( 'DB_USER', {{ db_user }} );
define( 'DB_PASSWORD', {{ db_password }} );
define( 'DB_HOST', {{ db_host }} );
define( 'DB_CHARSET', 'utf8mb4' );
define( 'DB_COLLATE', '' );

{% for salt in salts %}define( '{{ salt.0 }}', {{ salt.1 }} );
{% endfor %}
$table_prefix = {{ table_prefix }};

define( 'WP_DEBUG', false );
/* Core updates need the internet and write over the site's files: left to the operator. */
define( 'AUTOMATIC_UPDATER_DISABLED', true );

if ( ! defined( 'ABSPATH' ) ) {
	define( 'ABSPATH', __DIR__ . '/' );
}
require_once ABSPATH . 'wp-settings.php';
