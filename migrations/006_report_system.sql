-- 006_report_system.sql
-- MS5.0 report system: report templates, categories, permissions, schedules and
-- schedule runs, generation jobs, notifications, favourites and access logs;
-- the report columns of production_reports; the download counter trigger; the
-- functions cleanup_old_reports() and get_report_queue_status(); the views
-- factory_telemetry.report_generation_status and factory_telemetry.report_statistics.
--
-- Idempotent: safe on an empty database, on its own result, and on a
-- production database where these objects already exist (nothing is dropped
-- except the download-count trigger, which is recreated at once; no rows are
-- changed).

CREATE TABLE IF NOT EXISTS factory_telemetry.report_templates (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    description text NOT NULL,
    template_type text NOT NULL,
    parameters jsonb NOT NULL DEFAULT '[]'::jsonb,
    sections jsonb NOT NULL DEFAULT '[]'::jsonb,
    is_active boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now(),
    created_by uuid,
    updated_by uuid
);

CREATE TABLE IF NOT EXISTS factory_telemetry.report_generation_jobs (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    template_id uuid,
    report_type text NOT NULL,
    parameters jsonb NOT NULL DEFAULT '{}'::jsonb,
    status text DEFAULT 'pending'::text,
    priority integer DEFAULT 0,
    created_at timestamp with time zone DEFAULT now(),
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    created_by uuid,
    error_message text,
    progress_percentage integer DEFAULT 0
);

CREATE TABLE IF NOT EXISTS factory_telemetry.report_access_logs (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    report_id uuid,
    user_id uuid,
    action text NOT NULL,
    accessed_at timestamp with time zone DEFAULT now(),
    ip_address inet,
    user_agent text,
    additional_data jsonb DEFAULT '{}'::jsonb
);

CREATE TABLE IF NOT EXISTS factory_telemetry.report_favorites (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid,
    template_id uuid,
    name text NOT NULL,
    parameters jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.report_schedules (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    description text,
    template_id uuid,
    parameters jsonb NOT NULL DEFAULT '{}'::jsonb,
    schedule_cron text NOT NULL,
    is_active boolean DEFAULT true,
    next_run_at timestamp with time zone,
    last_run_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now(),
    created_by uuid,
    updated_by uuid
);

CREATE TABLE IF NOT EXISTS factory_telemetry.report_schedule_runs (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    schedule_id uuid,
    generation_job_id uuid,
    report_id uuid,
    status text DEFAULT 'pending'::text,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    error_message text,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.report_categories (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    description text,
    color text,
    icon text,
    sort_order integer DEFAULT 0,
    is_active boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.report_template_categories (
    template_id uuid NOT NULL,
    category_id uuid NOT NULL
);

CREATE TABLE IF NOT EXISTS factory_telemetry.report_permissions (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    template_id uuid,
    role text NOT NULL,
    can_generate boolean DEFAULT false,
    can_view boolean DEFAULT false,
    can_edit boolean DEFAULT false,
    can_delete boolean DEFAULT false,
    can_schedule boolean DEFAULT false,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.report_notifications (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    report_id uuid,
    user_id uuid,
    notification_type text NOT NULL,
    title text NOT NULL,
    message text NOT NULL,
    is_read boolean DEFAULT false,
    sent_at timestamp with time zone DEFAULT now(),
    read_at timestamp with time zone
);

-- production_reports: generated report files (template, job, file, status, downloads)
ALTER TABLE factory_telemetry.production_reports
    ADD COLUMN IF NOT EXISTS template_id uuid,
    ADD COLUMN IF NOT EXISTS generation_job_id uuid,
    ADD COLUMN IF NOT EXISTS file_size bigint,
    ADD COLUMN IF NOT EXISTS file_hash text,
    ADD COLUMN IF NOT EXISTS generation_parameters jsonb DEFAULT '{}'::jsonb,
    ADD COLUMN IF NOT EXISTS status text DEFAULT 'completed'::text,
    ADD COLUMN IF NOT EXISTS download_count integer DEFAULT 0,
    ADD COLUMN IF NOT EXISTS last_downloaded_at timestamp with time zone;

-- Keys and foreign keys, added only when missing. A constraint counts as present
-- when one with the same name (PostgreSQL's default name) or the same definition
-- is already on the table, or, for a primary key, when the table has any primary key.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('factory_telemetry.report_templates',           'report_templates_pkey',                         'PRIMARY KEY (id)'),
            ('factory_telemetry.report_generation_jobs',     'report_generation_jobs_pkey',                   'PRIMARY KEY (id)'),
            ('factory_telemetry.report_access_logs',         'report_access_logs_pkey',                       'PRIMARY KEY (id)'),
            ('factory_telemetry.report_favorites',           'report_favorites_pkey',                         'PRIMARY KEY (id)'),
            ('factory_telemetry.report_favorites',           'report_favorites_user_id_template_id_name_key', 'UNIQUE (user_id, template_id, name)'),
            ('factory_telemetry.report_schedules',           'report_schedules_pkey',                         'PRIMARY KEY (id)'),
            ('factory_telemetry.report_schedule_runs',       'report_schedule_runs_pkey',                     'PRIMARY KEY (id)'),
            ('factory_telemetry.report_categories',          'report_categories_pkey',                        'PRIMARY KEY (id)'),
            ('factory_telemetry.report_categories',          'report_categories_name_key',                    'UNIQUE (name)'),
            ('factory_telemetry.report_template_categories', 'report_template_categories_pkey',               'PRIMARY KEY (template_id, category_id)'),
            ('factory_telemetry.report_permissions',         'report_permissions_pkey',                       'PRIMARY KEY (id)'),
            ('factory_telemetry.report_permissions',         'report_permissions_template_id_role_key',       'UNIQUE (template_id, role)'),
            ('factory_telemetry.report_notifications',       'report_notifications_pkey',                     'PRIMARY KEY (id)'),
            ('factory_telemetry.production_reports',         'production_reports_generation_job_id_fkey',     'FOREIGN KEY (generation_job_id) REFERENCES factory_telemetry.report_generation_jobs(id)'),
            ('factory_telemetry.production_reports',         'production_reports_template_id_fkey',           'FOREIGN KEY (template_id) REFERENCES factory_telemetry.report_templates(id)'),
            ('factory_telemetry.report_templates',           'report_templates_created_by_fkey',              'FOREIGN KEY (created_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.report_templates',           'report_templates_updated_by_fkey',              'FOREIGN KEY (updated_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.report_generation_jobs',     'report_generation_jobs_created_by_fkey',        'FOREIGN KEY (created_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.report_generation_jobs',     'report_generation_jobs_template_id_fkey',       'FOREIGN KEY (template_id) REFERENCES factory_telemetry.report_templates(id)'),
            ('factory_telemetry.report_access_logs',         'report_access_logs_report_id_fkey',             'FOREIGN KEY (report_id) REFERENCES factory_telemetry.production_reports(id) ON DELETE CASCADE'),
            ('factory_telemetry.report_access_logs',         'report_access_logs_user_id_fkey',               'FOREIGN KEY (user_id) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.report_favorites',           'report_favorites_template_id_fkey',             'FOREIGN KEY (template_id) REFERENCES factory_telemetry.report_templates(id) ON DELETE CASCADE'),
            ('factory_telemetry.report_favorites',           'report_favorites_user_id_fkey',                 'FOREIGN KEY (user_id) REFERENCES factory_telemetry.users(id) ON DELETE CASCADE'),
            ('factory_telemetry.report_schedules',           'report_schedules_created_by_fkey',              'FOREIGN KEY (created_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.report_schedules',           'report_schedules_template_id_fkey',             'FOREIGN KEY (template_id) REFERENCES factory_telemetry.report_templates(id)'),
            ('factory_telemetry.report_schedules',           'report_schedules_updated_by_fkey',              'FOREIGN KEY (updated_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.report_schedule_runs',       'report_schedule_runs_generation_job_id_fkey',   'FOREIGN KEY (generation_job_id) REFERENCES factory_telemetry.report_generation_jobs(id)'),
            ('factory_telemetry.report_schedule_runs',       'report_schedule_runs_report_id_fkey',           'FOREIGN KEY (report_id) REFERENCES factory_telemetry.production_reports(id)'),
            ('factory_telemetry.report_schedule_runs',       'report_schedule_runs_schedule_id_fkey',         'FOREIGN KEY (schedule_id) REFERENCES factory_telemetry.report_schedules(id) ON DELETE CASCADE'),
            ('factory_telemetry.report_template_categories', 'report_template_categories_category_id_fkey',   'FOREIGN KEY (category_id) REFERENCES factory_telemetry.report_categories(id) ON DELETE CASCADE'),
            ('factory_telemetry.report_template_categories', 'report_template_categories_template_id_fkey',   'FOREIGN KEY (template_id) REFERENCES factory_telemetry.report_templates(id) ON DELETE CASCADE'),
            ('factory_telemetry.report_permissions',         'report_permissions_template_id_fkey',           'FOREIGN KEY (template_id) REFERENCES factory_telemetry.report_templates(id) ON DELETE CASCADE'),
            ('factory_telemetry.report_notifications',       'report_notifications_report_id_fkey',           'FOREIGN KEY (report_id) REFERENCES factory_telemetry.production_reports(id) ON DELETE CASCADE'),
            ('factory_telemetry.report_notifications',       'report_notifications_user_id_fkey',             'FOREIGN KEY (user_id) REFERENCES factory_telemetry.users(id)')
        ) AS v(tbl, conname, condef)
    LOOP
        IF NOT EXISTS (
            SELECT 1
            FROM pg_constraint pc
            WHERE pc.conrelid = c.tbl::regclass
              AND (pc.conname = c.conname
                   OR pg_get_constraintdef(pc.oid) = c.condef
                   OR (pc.contype = 'p' AND starts_with(c.condef, 'PRIMARY KEY')))
        ) THEN
            EXECUTE 'ALTER TABLE ' || c.tbl || ' ADD CONSTRAINT ' || quote_ident(c.conname) || ' ' || c.condef;
            RAISE NOTICE 'added constraint % on %', c.conname, c.tbl;
        END IF;
    END LOOP;
END
$$;

-- Indexes
CREATE INDEX IF NOT EXISTS idx_report_templates_type ON factory_telemetry.report_templates (template_type);
CREATE INDEX IF NOT EXISTS idx_report_templates_active ON factory_telemetry.report_templates (is_active);
CREATE INDEX IF NOT EXISTS idx_report_templates_created_by ON factory_telemetry.report_templates (created_by);
CREATE INDEX IF NOT EXISTS idx_report_generation_jobs_status ON factory_telemetry.report_generation_jobs (status);
CREATE INDEX IF NOT EXISTS idx_report_generation_jobs_priority ON factory_telemetry.report_generation_jobs (priority DESC);
CREATE INDEX IF NOT EXISTS idx_report_generation_jobs_created_at ON factory_telemetry.report_generation_jobs (created_at);
CREATE INDEX IF NOT EXISTS idx_report_generation_jobs_template_id ON factory_telemetry.report_generation_jobs (template_id);
CREATE INDEX IF NOT EXISTS idx_production_reports_template_id ON factory_telemetry.production_reports (template_id);
CREATE INDEX IF NOT EXISTS idx_production_reports_status ON factory_telemetry.production_reports (status);
CREATE INDEX IF NOT EXISTS idx_production_reports_generated_at ON factory_telemetry.production_reports (generated_at);
CREATE INDEX IF NOT EXISTS idx_production_reports_line_id ON factory_telemetry.production_reports (line_id);
CREATE INDEX IF NOT EXISTS idx_report_access_logs_report_id ON factory_telemetry.report_access_logs (report_id);
CREATE INDEX IF NOT EXISTS idx_report_access_logs_user_id ON factory_telemetry.report_access_logs (user_id);
CREATE INDEX IF NOT EXISTS idx_report_access_logs_accessed_at ON factory_telemetry.report_access_logs (accessed_at);
CREATE INDEX IF NOT EXISTS idx_report_favorites_user_id ON factory_telemetry.report_favorites (user_id);
CREATE INDEX IF NOT EXISTS idx_report_favorites_template_id ON factory_telemetry.report_favorites (template_id);
CREATE INDEX IF NOT EXISTS idx_report_schedules_active ON factory_telemetry.report_schedules (is_active);
CREATE INDEX IF NOT EXISTS idx_report_schedules_next_run ON factory_telemetry.report_schedules (next_run_at);
CREATE INDEX IF NOT EXISTS idx_report_schedules_template_id ON factory_telemetry.report_schedules (template_id);
CREATE INDEX IF NOT EXISTS idx_report_schedule_runs_schedule_id ON factory_telemetry.report_schedule_runs (schedule_id);
CREATE INDEX IF NOT EXISTS idx_report_schedule_runs_status ON factory_telemetry.report_schedule_runs (status);
CREATE INDEX IF NOT EXISTS idx_report_schedule_runs_created_at ON factory_telemetry.report_schedule_runs (created_at);
CREATE INDEX IF NOT EXISTS idx_report_categories_active ON factory_telemetry.report_categories (is_active);
CREATE INDEX IF NOT EXISTS idx_report_categories_sort_order ON factory_telemetry.report_categories (sort_order);
CREATE INDEX IF NOT EXISTS idx_report_permissions_template_id ON factory_telemetry.report_permissions (template_id);
CREATE INDEX IF NOT EXISTS idx_report_permissions_role ON factory_telemetry.report_permissions (role);
CREATE INDEX IF NOT EXISTS idx_report_notifications_user_id ON factory_telemetry.report_notifications (user_id);
CREATE INDEX IF NOT EXISTS idx_report_notifications_is_read ON factory_telemetry.report_notifications (is_read);
CREATE INDEX IF NOT EXISTS idx_report_notifications_sent_at ON factory_telemetry.report_notifications (sent_at);

-- Views
CREATE OR REPLACE VIEW factory_telemetry.report_generation_status AS
SELECT j.id AS job_id,
       j.template_id,
       t.name AS template_name,
       j.report_type,
       j.status,
       j.priority,
       j.progress_percentage,
       j.created_at,
       j.started_at,
       j.completed_at,
       j.error_message,
       u.username AS created_by_username,
       CASE WHEN j.status = 'completed' THEN pr.id END AS report_id
FROM factory_telemetry.report_generation_jobs j
LEFT JOIN factory_telemetry.report_templates t ON t.id = j.template_id
LEFT JOIN factory_telemetry.users u ON u.id = j.created_by
LEFT JOIN factory_telemetry.production_reports pr ON pr.generation_job_id = j.id;

CREATE OR REPLACE VIEW factory_telemetry.report_statistics AS
SELECT count(*) AS total_reports,
       count(*) FILTER (WHERE pr.generated_at >= now() - interval '1 day') AS reports_today,
       count(*) FILTER (WHERE pr.generated_at >= now() - interval '7 days') AS reports_this_week,
       count(*) FILTER (WHERE pr.generated_at >= now() - interval '30 days') AS reports_this_month,
       sum(pr.file_size) AS total_storage_used,
       avg(pr.file_size) AS average_file_size,
       count(*) FILTER (WHERE pr.status = 'completed') AS completed_reports,
       count(*) FILTER (WHERE pr.status = 'failed') AS failed_reports,
       count(*) FILTER (WHERE pr.status = 'generating') AS generating_reports
FROM factory_telemetry.production_reports pr;

-- Functions
-- Counts downloads: each 'downloaded' access log row increments the report's
-- download_count and sets last_downloaded_at.
CREATE OR REPLACE FUNCTION factory_telemetry.update_report_download_count()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.action = 'downloaded' THEN
        UPDATE factory_telemetry.production_reports
           SET download_count = COALESCE(download_count, 0) + 1,
               last_downloaded_at = NEW.accessed_at
         WHERE id = NEW.report_id;
    END IF;
    RETURN NEW;
END;
$$;

-- Housekeeping, only when called: deletes completed reports older than a year
-- that were never downloaded, access logs older than six months, and finished
-- generation jobs older than three months. Returns the number of reports deleted.
CREATE OR REPLACE FUNCTION factory_telemetry.cleanup_old_reports()
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    deleted_reports integer;
BEGIN
    DELETE FROM factory_telemetry.production_reports pr
     WHERE pr.generated_at < now() - interval '1 year'
       AND pr.download_count = 0
       AND pr.status = 'completed'
       AND NOT EXISTS (SELECT 1 FROM factory_telemetry.report_schedule_runs r
                       WHERE r.report_id = pr.id);
    GET DIAGNOSTICS deleted_reports = ROW_COUNT;

    DELETE FROM factory_telemetry.report_access_logs
     WHERE accessed_at < now() - interval '6 months';

    DELETE FROM factory_telemetry.report_generation_jobs j
     WHERE j.created_at < now() - interval '3 months'
       AND j.status IN ('completed', 'failed', 'cancelled')
       AND NOT EXISTS (SELECT 1 FROM factory_telemetry.production_reports pr
                       WHERE pr.generation_job_id = j.id)
       AND NOT EXISTS (SELECT 1 FROM factory_telemetry.report_schedule_runs r
                       WHERE r.generation_job_id = j.id);

    RETURN deleted_reports;
END;
$$;

-- Report generation queue over the last seven days.
CREATE OR REPLACE FUNCTION factory_telemetry.get_report_queue_status()
RETURNS TABLE(pending_jobs integer, processing_jobs integer, completed_today integer,
              failed_today integer, average_generation_time interval)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
    SELECT (count(*) FILTER (WHERE j.status = 'pending'))::integer,
           (count(*) FILTER (WHERE j.status = 'processing'))::integer,
           (count(*) FILTER (WHERE j.status = 'completed' AND j.completed_at >= current_date))::integer,
           (count(*) FILTER (WHERE j.status = 'failed' AND j.created_at >= current_date))::integer,
           avg(j.completed_at - j.started_at)
    FROM factory_telemetry.report_generation_jobs j
    WHERE j.created_at >= now() - interval '7 days';
END;
$$;

-- Trigger
DROP TRIGGER IF EXISTS trigger_update_report_download_count ON factory_telemetry.report_access_logs;
CREATE TRIGGER trigger_update_report_download_count
    AFTER INSERT ON factory_telemetry.report_access_logs
    FOR EACH ROW
    EXECUTE FUNCTION factory_telemetry.update_report_download_count();
