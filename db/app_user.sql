-- The pipeline's application user, with least privilege: it reads and writes rows of the `analytics` database and
-- nothing else (no DROP, ALTER, CREATE of permanent tables, GRANT, or access to other databases).
--
-- The caller sets the session variables first, so that no credential is written in this file:
--   SET @app_user = 'analytics', @app_password = '...', @app_host = '%';  SOURCE db/app_user.sql;
-- Used by the native stack (infra/stack.py) and by docker compose (infra/mysql/initdb/20-app-user.sh).
-- Common SQL of MySQL 8.4 and MariaDB 10.11: prepared CREATE USER / ALTER USER / GRANT.

SET @app_host = COALESCE(@app_host, '%');
SET @app_account = CONCAT(QUOTE(@app_user), '@', QUOTE(@app_host));

SET @stmt = CONCAT('CREATE USER IF NOT EXISTS ', @app_account, ' IDENTIFIED BY ', QUOTE(@app_password));
PREPARE create_user FROM @stmt;
EXECUTE create_user;
DEALLOCATE PREPARE create_user;

-- Re-running with another password rotates it.
SET @stmt = CONCAT('ALTER USER ', @app_account, ' IDENTIFIED BY ', QUOTE(@app_password));
PREPARE alter_user FROM @stmt;
EXECUTE alter_user;
DEALLOCATE PREPARE alter_user;

-- Spark's micro-batch merge needs row access and temporary tables; staging tables are permanent tables of
-- db/schema.sql cleared with DELETE, so no DROP/TRUNCATE/CREATE is granted.
SET @stmt = CONCAT('GRANT SELECT, INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES ON `analytics`.* TO ', @app_account);
PREPARE grant_rows FROM @stmt;
EXECUTE grant_rows;
DEALLOCATE PREPARE grant_rows;
