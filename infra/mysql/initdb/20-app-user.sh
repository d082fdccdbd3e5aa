# shellcheck shell=bash
# Creates the pipeline's application user with least privilege (db/app_user.sql) on the first start of the
# docker compose MySQL. Mounted as /docker-entrypoint-initdb.d/20-app-user.sh, after 10-schema.sql.
#
# Not executable on purpose: the image's entrypoint then *sources* it, which gives it docker_process_sql (the
# mysql client as root over the init server's socket) and mysql_note/mysql_error. The credentials come from
# MYSQL_APP_USER / MYSQL_APP_PASSWORD (set in docker-compose.yml from MYSQL_USER / MYSQL_PASSWORD) and reach
# the server as session variables on stdin, never on a command line, as in the native stack (infra/stack.py).

if ! declare -F docker_process_sql >/dev/null; then
	echo "20-app-user.sh must be sourced by the mysql image's docker-entrypoint.sh (is it executable?)" >&2
	exit 1
fi
if [ -z "${MYSQL_APP_USER:-}" ] || [ -z "${MYSQL_APP_PASSWORD:-}" ]; then
	mysql_error "MYSQL_APP_USER and MYSQL_APP_PASSWORD must be set (docker-compose.yml sets them from MYSQL_USER / MYSQL_PASSWORD)"
fi
if [ ! -r "${MYSQL_APP_USER_SQL:=/usr/local/share/game-events/app_user.sql}" ]; then
	mysql_error "cannot read ${MYSQL_APP_USER_SQL}: mount db/app_user.sql there (see docker-compose.yml)"
fi

# A string literal for the mysql client: backslashes and single quotes escaped.
_app_user_sql_quote() {
	local value=${1//\\/\\\\}
	printf "'%s'" "${value//\'/\\\'}"
}

mysql_note "Creating the application user ${MYSQL_APP_USER} with the pipeline's privileges (${MYSQL_APP_USER_SQL})"
{
	printf 'SET @app_user = %s, @app_password = %s, @app_host = %s;\n' \
		"$(_app_user_sql_quote "$MYSQL_APP_USER")" "$(_app_user_sql_quote "$MYSQL_APP_PASSWORD")" "'%'"
	cat "$MYSQL_APP_USER_SQL"
} | docker_process_sql --database=mysql
unset -f _app_user_sql_quote
