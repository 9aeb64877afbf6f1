-- 003_production_management.sql
-- MS5.0 production management: production lines, product types, production
-- schedules, job assignments, pre-start checklists (templates, completions),
-- downtime events, OEE calculations, production reports, andon events, the
-- personnel columns of users, and the dashboard views
-- public.v_production_dashboard, public.v_downtime_summary, public.v_oee_summary.
--
-- Idempotent: safe on an empty database, on its own result, and on a
-- production database where these objects already exist (nothing is dropped,
-- no rows are changed). oee_calculations keeps its legacy shape (id bigserial
-- primary key); the TimescaleDB conversion is done by the migration tool.
-- Report columns of production_reports are added in 006, escalation columns of
-- andon_events in 005.

CREATE TABLE IF NOT EXISTS factory_telemetry.production_lines (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_code text NOT NULL,
    name text NOT NULL,
    description text,
    equipment_codes text[] NOT NULL,
    target_speed real,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.product_types (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    product_code text NOT NULL,
    name text NOT NULL,
    description text,
    target_speed real,
    cycle_time_seconds real,
    quality_specs jsonb,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.production_schedules (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_id uuid,
    product_type_id uuid,
    scheduled_start timestamp with time zone NOT NULL,
    scheduled_end timestamp with time zone NOT NULL,
    target_quantity integer NOT NULL,
    priority integer DEFAULT 1,
    status text DEFAULT 'scheduled'::text,
    created_by uuid,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.job_assignments (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    schedule_id uuid,
    user_id uuid,
    assigned_at timestamp with time zone DEFAULT now(),
    accepted_at timestamp with time zone,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    status text DEFAULT 'assigned'::text,
    notes text
);

CREATE TABLE IF NOT EXISTS factory_telemetry.checklist_templates (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    equipment_codes text[] NOT NULL,
    checklist_items jsonb NOT NULL,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.checklist_completions (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    job_assignment_id uuid,
    template_id uuid,
    completed_by uuid,
    completed_at timestamp with time zone DEFAULT now(),
    responses jsonb NOT NULL,
    signature_data jsonb,
    status text DEFAULT 'completed'::text
);

CREATE TABLE IF NOT EXISTS factory_telemetry.downtime_events (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_id uuid,
    equipment_code text NOT NULL,
    start_time timestamp with time zone NOT NULL,
    end_time timestamp with time zone,
    duration_seconds integer,
    reason_code text NOT NULL,
    reason_description text,
    category text,
    subcategory text,
    reported_by uuid,
    confirmed_by uuid,
    confirmed_at timestamp with time zone,
    notes text,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.oee_calculations (
    id bigserial NOT NULL,
    line_id uuid,
    equipment_code text NOT NULL,
    calculation_time timestamp with time zone NOT NULL,
    availability real NOT NULL,
    performance real NOT NULL,
    quality real NOT NULL,
    oee real NOT NULL,
    planned_production_time integer,
    actual_production_time integer,
    ideal_cycle_time real,
    actual_cycle_time real,
    good_parts integer,
    total_parts integer
);

CREATE TABLE IF NOT EXISTS factory_telemetry.production_reports (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_id uuid,
    report_date date NOT NULL,
    shift text,
    total_production integer DEFAULT 0,
    good_parts integer DEFAULT 0,
    scrap_parts integer DEFAULT 0,
    rework_parts integer DEFAULT 0,
    total_downtime_minutes integer DEFAULT 0,
    oee_average real,
    report_data jsonb,
    generated_by uuid,
    generated_at timestamp with time zone DEFAULT now(),
    pdf_path text
);

CREATE TABLE IF NOT EXISTS factory_telemetry.andon_events (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_id uuid,
    equipment_code text NOT NULL,
    event_type text NOT NULL,
    priority text NOT NULL,
    description text NOT NULL,
    reported_by uuid,
    reported_at timestamp with time zone DEFAULT now(),
    acknowledged_by uuid,
    acknowledged_at timestamp with time zone,
    resolved_by uuid,
    resolved_at timestamp with time zone,
    resolution_notes text,
    status text DEFAULT 'open'::text
);

-- users: personnel details used by job assignment and the dashboard
ALTER TABLE factory_telemetry.users
    ADD COLUMN IF NOT EXISTS first_name text,
    ADD COLUMN IF NOT EXISTS last_name text,
    ADD COLUMN IF NOT EXISTS employee_id text,
    ADD COLUMN IF NOT EXISTS department text,
    ADD COLUMN IF NOT EXISTS shift text,
    ADD COLUMN IF NOT EXISTS skills text[],
    ADD COLUMN IF NOT EXISTS certifications text[],
    ADD COLUMN IF NOT EXISTS is_active boolean DEFAULT true;

-- Keys and foreign keys, added only when missing. A constraint counts as present
-- when one with the same name (PostgreSQL's default name) or the same definition
-- is already on the table, or, for a primary key, when the table has any primary key.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('factory_telemetry.users',                 'users_employee_id_key',                        'UNIQUE (employee_id)'),
            ('factory_telemetry.production_lines',      'production_lines_pkey',                        'PRIMARY KEY (id)'),
            ('factory_telemetry.production_lines',      'production_lines_line_code_key',               'UNIQUE (line_code)'),
            ('factory_telemetry.product_types',         'product_types_pkey',                           'PRIMARY KEY (id)'),
            ('factory_telemetry.product_types',         'product_types_product_code_key',               'UNIQUE (product_code)'),
            ('factory_telemetry.production_schedules',  'production_schedules_pkey',                    'PRIMARY KEY (id)'),
            ('factory_telemetry.job_assignments',       'job_assignments_pkey',                         'PRIMARY KEY (id)'),
            ('factory_telemetry.checklist_templates',   'checklist_templates_pkey',                     'PRIMARY KEY (id)'),
            ('factory_telemetry.checklist_completions', 'checklist_completions_pkey',                   'PRIMARY KEY (id)'),
            ('factory_telemetry.downtime_events',       'downtime_events_pkey',                         'PRIMARY KEY (id)'),
            ('factory_telemetry.oee_calculations',      'oee_calculations_pkey',                        'PRIMARY KEY (id)'),
            ('factory_telemetry.production_reports',    'production_reports_pkey',                      'PRIMARY KEY (id)'),
            ('factory_telemetry.andon_events',          'andon_events_pkey',                            'PRIMARY KEY (id)'),
            ('factory_telemetry.production_schedules',  'production_schedules_created_by_fkey',         'FOREIGN KEY (created_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.production_schedules',  'production_schedules_line_id_fkey',            'FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.production_schedules',  'production_schedules_product_type_id_fkey',    'FOREIGN KEY (product_type_id) REFERENCES factory_telemetry.product_types(id)'),
            ('factory_telemetry.job_assignments',       'job_assignments_schedule_id_fkey',             'FOREIGN KEY (schedule_id) REFERENCES factory_telemetry.production_schedules(id)'),
            ('factory_telemetry.job_assignments',       'job_assignments_user_id_fkey',                 'FOREIGN KEY (user_id) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.checklist_completions', 'checklist_completions_completed_by_fkey',      'FOREIGN KEY (completed_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.checklist_completions', 'checklist_completions_job_assignment_id_fkey', 'FOREIGN KEY (job_assignment_id) REFERENCES factory_telemetry.job_assignments(id)'),
            ('factory_telemetry.checklist_completions', 'checklist_completions_template_id_fkey',       'FOREIGN KEY (template_id) REFERENCES factory_telemetry.checklist_templates(id)'),
            ('factory_telemetry.downtime_events',       'downtime_events_confirmed_by_fkey',            'FOREIGN KEY (confirmed_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.downtime_events',       'downtime_events_line_id_fkey',                 'FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.downtime_events',       'downtime_events_reported_by_fkey',             'FOREIGN KEY (reported_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.oee_calculations',      'oee_calculations_line_id_fkey',                'FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.production_reports',    'production_reports_generated_by_fkey',         'FOREIGN KEY (generated_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.production_reports',    'production_reports_line_id_fkey',              'FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.andon_events',          'andon_events_acknowledged_by_fkey',            'FOREIGN KEY (acknowledged_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.andon_events',          'andon_events_line_id_fkey',                    'FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.andon_events',          'andon_events_reported_by_fkey',                'FOREIGN KEY (reported_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.andon_events',          'andon_events_resolved_by_fkey',                'FOREIGN KEY (resolved_by) REFERENCES factory_telemetry.users(id)')
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
CREATE INDEX IF NOT EXISTS idx_production_lines_enabled ON factory_telemetry.production_lines (enabled);
CREATE INDEX IF NOT EXISTS idx_production_schedules_line_id ON factory_telemetry.production_schedules (line_id);
CREATE INDEX IF NOT EXISTS idx_production_schedules_status ON factory_telemetry.production_schedules (status);
CREATE INDEX IF NOT EXISTS idx_production_schedules_scheduled_start ON factory_telemetry.production_schedules (scheduled_start);
CREATE INDEX IF NOT EXISTS idx_job_assignments_user_id ON factory_telemetry.job_assignments (user_id);
CREATE INDEX IF NOT EXISTS idx_job_assignments_status ON factory_telemetry.job_assignments (status);
CREATE INDEX IF NOT EXISTS idx_downtime_events_line_id ON factory_telemetry.downtime_events (line_id);
CREATE INDEX IF NOT EXISTS idx_downtime_events_start_time ON factory_telemetry.downtime_events (start_time);
CREATE INDEX IF NOT EXISTS idx_oee_calculations_line_id ON factory_telemetry.oee_calculations (line_id);
CREATE INDEX IF NOT EXISTS idx_oee_calculations_calculation_time ON factory_telemetry.oee_calculations (calculation_time);
CREATE INDEX IF NOT EXISTS idx_andon_events_line_id ON factory_telemetry.andon_events (line_id);
CREATE INDEX IF NOT EXISTS idx_andon_events_status ON factory_telemetry.andon_events (status);
CREATE INDEX IF NOT EXISTS idx_andon_events_priority ON factory_telemetry.andon_events (priority);

-- Views
CREATE OR REPLACE VIEW public.v_production_dashboard AS
SELECT pl.id AS line_id,
       pl.line_code,
       pl.name AS line_name,
       pl.target_speed,
       ps.id AS schedule_id,
       ps.scheduled_start,
       ps.scheduled_end,
       ps.target_quantity,
       ps.status AS schedule_status,
       pt.product_code,
       pt.name AS product_name,
       pt.cycle_time_seconds,
       ja.id AS job_assignment_id,
       ja.user_id,
       ja.status AS job_status,
       ja.assigned_at,
       ja.accepted_at,
       ja.started_at,
       ja.completed_at,
       u.username,
       u.first_name,
       u.last_name
FROM factory_telemetry.production_lines pl
LEFT JOIN factory_telemetry.production_schedules ps ON ps.line_id = pl.id
LEFT JOIN factory_telemetry.product_types pt ON pt.id = ps.product_type_id
LEFT JOIN factory_telemetry.job_assignments ja ON ja.schedule_id = ps.id
LEFT JOIN factory_telemetry.users u ON u.id = ja.user_id
WHERE pl.enabled = true
ORDER BY pl.name, ps.scheduled_start;

CREATE OR REPLACE VIEW public.v_downtime_summary AS
SELECT pl.line_code,
       pl.name AS line_name,
       de.equipment_code,
       de.category,
       de.subcategory,
       de.reason_code,
       de.reason_description,
       de.start_time,
       de.end_time,
       de.duration_seconds,
       de.duration_seconds / 60.0 AS duration_minutes,
       ur.username AS reported_by,
       uc.username AS confirmed_by
FROM factory_telemetry.downtime_events de
JOIN factory_telemetry.production_lines pl ON pl.id = de.line_id
LEFT JOIN factory_telemetry.users ur ON ur.id = de.reported_by
LEFT JOIN factory_telemetry.users uc ON uc.id = de.confirmed_by
WHERE de.end_time IS NOT NULL
ORDER BY de.start_time DESC;

CREATE OR REPLACE VIEW public.v_oee_summary AS
SELECT pl.line_code,
       pl.name AS line_name,
       oc.equipment_code,
       oc.calculation_time,
       oc.availability,
       oc.performance,
       oc.quality,
       oc.oee,
       oc.good_parts,
       oc.total_parts,
       CASE
           WHEN oc.oee >= 0.85 THEN 'Excellent'
           WHEN oc.oee >= 0.70 THEN 'Good'
           WHEN oc.oee >= 0.50 THEN 'Fair'
           ELSE 'Poor'
       END AS oee_rating
FROM factory_telemetry.oee_calculations oc
JOIN factory_telemetry.production_lines pl ON pl.id = oc.line_id
ORDER BY oc.calculation_time DESC;
