-- MS5.0 production database as it is today (before the TimescaleDB migration).
--
-- Recreates, on an empty PostgreSQL 15 database, what the MS5.0 migration files 001..009 left behind
-- when they were applied with psql on plain PostgreSQL without stopping on errors (see
-- /work/shared/ms5/legacy-schema.md): 49 plain tables in schema factory_telemetry, the views in public
-- and factory_telemetry, three materialized views, the functions and one trigger. No timescaledb
-- extension, no hypertables: every statement that needed TimescaleDB failed in production and left
-- no trace.
--
-- Runs as one script in one transaction (psycopg: conn.execute(open(file).read()) with no
-- parameters, or psql -1 -f). No psql meta-commands.
--
-- Foreign keys are added at the end with ALTER TABLE because the tables reference each other
-- circularly (context -> job_assignments, production_reports -> report_generation_jobs, ...).
-- Constraints are left unnamed so that PostgreSQL gives them the same names production has
-- (<table>_pkey, <table>_<cols>_key, <table>_<col>_fkey).

CREATE SCHEMA factory_telemetry;

-- ===========================================================================================
-- Tables created by migration 001 (telemetry)
-- ===========================================================================================

CREATE TABLE factory_telemetry.metric_def (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    equipment_code text NOT NULL,
    metric_key text NOT NULL,
    value_type text NOT NULL,
    unit text,
    description text NOT NULL,
    enabled boolean DEFAULT true,
    display_name text,
    min_value real,
    max_value real,
    warning_threshold real,
    alarm_threshold real,
    unit_display text,
    PRIMARY KEY (id),
    UNIQUE (equipment_code, metric_key)
);

CREATE TABLE factory_telemetry.metric_binding (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    metric_def_id uuid NOT NULL,
    plc_kind text NOT NULL,
    address text NOT NULL,
    bit_index integer,
    parse_hint text,
    transform_sql text,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.metric_latest (
    metric_def_id uuid NOT NULL,
    ts timestamp with time zone NOT NULL,
    value_bool boolean,
    value_int bigint,
    value_real double precision,
    value_text text,
    value_json jsonb,
    PRIMARY KEY (metric_def_id)
);

CREATE TABLE factory_telemetry.metric_hist (
    id bigserial NOT NULL,
    metric_def_id uuid NOT NULL,
    ts timestamp with time zone NOT NULL,
    value_bool boolean,
    value_int bigint,
    value_real double precision,
    value_text text,
    value_json jsonb,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.fault_catalog (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    equipment_code text NOT NULL,
    bit_index integer NOT NULL,
    name text NOT NULL,
    description text,
    marker text NOT NULL,
    PRIMARY KEY (id),
    UNIQUE (equipment_code, bit_index)
);

CREATE TABLE factory_telemetry.fault_active (
    equipment_code text NOT NULL,
    bit_index integer NOT NULL,
    ts timestamp with time zone NOT NULL,
    is_active boolean NOT NULL,
    PRIMARY KEY (equipment_code, bit_index)
);

CREATE TABLE factory_telemetry.fault_event (
    id bigserial NOT NULL,
    equipment_code text NOT NULL,
    bit_index integer NOT NULL,
    ts_on timestamp with time zone NOT NULL,
    ts_off timestamp with time zone,
    duration_s double precision,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.context (
    equipment_code text NOT NULL,
    current_operator text,
    current_shift text,
    planned_stop boolean NOT NULL DEFAULT false,
    planned_stop_reason text,
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    current_job_id uuid,
    production_schedule_id uuid,
    target_speed real,
    current_product_type_id uuid,
    production_line_id uuid,
    shift_id uuid,
    target_quantity integer DEFAULT 0,
    actual_quantity integer DEFAULT 0,
    production_efficiency real DEFAULT 0.0,
    quality_rate real DEFAULT 0.0,
    changeover_status text DEFAULT 'none'::text,
    changeover_start_time timestamp with time zone,
    changeover_end_time timestamp with time zone,
    last_production_update timestamp with time zone DEFAULT now(),
    PRIMARY KEY (equipment_code)
);

-- ===========================================================================================
-- Tables created by migration 002 (PLC and equipment configuration, users)
-- ===========================================================================================

CREATE TABLE factory_telemetry.plc_config (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    ip_address text NOT NULL,
    plc_type text NOT NULL,
    port integer DEFAULT 44818,
    enabled boolean DEFAULT true,
    poll_interval_s double precision DEFAULT 1.0,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (ip_address, port)
);

CREATE TABLE factory_telemetry.equipment_config (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    equipment_code text NOT NULL,
    name text NOT NULL,
    description text,
    plc_id uuid,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now(),
    production_line_id uuid,
    equipment_type text DEFAULT 'production'::text,
    criticality_level integer DEFAULT 3,
    target_speed real,
    oee_targets jsonb DEFAULT '{"oee": 0.73, "quality": 0.95, "performance": 0.85, "availability": 0.90}'::jsonb,
    fault_thresholds jsonb DEFAULT '{}'::jsonb,
    andon_settings jsonb DEFAULT '{"auto_generate_events": true, "escalation_timeout_minutes": 15}'::jsonb,
    location text,
    department text,
    maintenance_interval_hours integer DEFAULT 168,
    last_maintenance_date timestamp with time zone,
    next_maintenance_date timestamp with time zone,
    ideal_cycle_time real DEFAULT 1.0,
    PRIMARY KEY (id),
    UNIQUE (equipment_code)
);

CREATE TABLE factory_telemetry.users (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    username text NOT NULL,
    email text NOT NULL,
    password_hash text NOT NULL,
    role text DEFAULT 'operator'::text,
    created_at timestamp with time zone DEFAULT now(),
    last_login timestamp with time zone,
    first_name text,
    last_name text,
    employee_id text,
    department text,
    shift text,
    skills text[],
    certifications text[],
    is_active boolean DEFAULT true,
    updated_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (username),
    UNIQUE (email),
    UNIQUE (employee_id)
);

-- ===========================================================================================
-- Tables created by migration 003 (production management)
-- ===========================================================================================

CREATE TABLE factory_telemetry.production_lines (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_code text NOT NULL,
    name text NOT NULL,
    description text,
    equipment_codes text[] NOT NULL,
    target_speed real,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (line_code)
);

CREATE TABLE factory_telemetry.product_types (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    product_code text NOT NULL,
    name text NOT NULL,
    description text,
    target_speed real,
    cycle_time_seconds real,
    quality_specs jsonb,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (product_code)
);

CREATE TABLE factory_telemetry.production_schedules (
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
    updated_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.job_assignments (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    schedule_id uuid,
    user_id uuid,
    assigned_at timestamp with time zone DEFAULT now(),
    accepted_at timestamp with time zone,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    status text DEFAULT 'assigned'::text,
    notes text,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.checklist_templates (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    equipment_codes text[] NOT NULL,
    checklist_items jsonb NOT NULL,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.checklist_completions (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    job_assignment_id uuid,
    template_id uuid,
    completed_by uuid,
    completed_at timestamp with time zone DEFAULT now(),
    responses jsonb NOT NULL,
    signature_data jsonb,
    status text DEFAULT 'completed'::text,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.downtime_events (
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
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.oee_calculations (
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
    total_parts integer,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.production_reports (
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
    pdf_path text,
    template_id uuid,
    generation_job_id uuid,
    file_size bigint,
    file_hash text,
    generation_parameters jsonb DEFAULT '{}'::jsonb,
    status text DEFAULT 'completed'::text,
    download_count integer DEFAULT 0,
    last_downloaded_at timestamp with time zone,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.andon_events (
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
    status text DEFAULT 'open'::text,
    escalation_level integer DEFAULT 0,
    escalation_status text DEFAULT 'none'::text,
    PRIMARY KEY (id)
);

-- ===========================================================================================
-- Tables created by migration 004 (advanced production)
-- ===========================================================================================

CREATE TABLE factory_telemetry.production_shifts (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    start_time time without time zone NOT NULL,
    end_time time without time zone NOT NULL,
    description text,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.shift_assignments (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid,
    shift_id uuid,
    line_id uuid,
    assigned_date date NOT NULL,
    is_primary boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.production_targets (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_id uuid,
    product_type_id uuid,
    target_date date NOT NULL,
    shift_id uuid,
    target_quantity integer NOT NULL,
    target_oee real,
    target_availability real,
    target_performance real,
    target_quality real,
    created_by uuid,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (line_id, product_type_id, target_date, shift_id)
);

CREATE TABLE factory_telemetry.quality_checks (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_id uuid,
    product_type_id uuid,
    check_time timestamp with time zone NOT NULL,
    check_type text NOT NULL,
    check_result text NOT NULL,
    quantity_checked integer NOT NULL,
    quantity_passed integer NOT NULL,
    quantity_failed integer NOT NULL,
    defect_codes text[],
    notes text,
    checked_by uuid,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.defect_codes (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    code text NOT NULL,
    name text NOT NULL,
    description text,
    category text NOT NULL,
    severity text NOT NULL,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (code)
);

CREATE TABLE factory_telemetry.maintenance_work_orders (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    work_order_number text NOT NULL,
    equipment_code text NOT NULL,
    title text NOT NULL,
    description text,
    priority text NOT NULL,
    status text DEFAULT 'open'::text,
    work_type text NOT NULL,
    scheduled_start timestamp with time zone,
    scheduled_end timestamp with time zone,
    actual_start timestamp with time zone,
    actual_end timestamp with time zone,
    estimated_duration_hours real,
    actual_duration_hours real,
    assigned_to uuid,
    created_by uuid,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (work_order_number)
);

CREATE TABLE factory_telemetry.maintenance_tasks (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    work_order_id uuid,
    task_name text NOT NULL,
    description text,
    task_order integer NOT NULL,
    estimated_duration_minutes integer,
    actual_duration_minutes integer,
    status text DEFAULT 'pending'::text,
    completed_by uuid,
    completed_at timestamp with time zone,
    notes text,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.material_consumption (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_id uuid,
    material_code text NOT NULL,
    material_name text NOT NULL,
    consumption_date date NOT NULL,
    shift_id uuid,
    quantity_consumed real NOT NULL,
    unit_of_measure text NOT NULL,
    cost_per_unit real,
    total_cost real,
    recorded_by uuid,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.energy_consumption (
    id bigserial NOT NULL,
    equipment_code text NOT NULL,
    consumption_time timestamp with time zone NOT NULL,
    power_consumption_kw real NOT NULL,
    energy_consumption_kwh real NOT NULL,
    voltage_v real,
    current_a real,
    power_factor real,
    temperature_c real,
    humidity_percent real,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.production_alerts (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_id uuid,
    equipment_code text,
    alert_type text NOT NULL,
    severity text NOT NULL,
    title text NOT NULL,
    message text NOT NULL,
    threshold_value real,
    actual_value real,
    is_acknowledged boolean DEFAULT false,
    acknowledged_by uuid,
    acknowledged_at timestamp with time zone,
    is_resolved boolean DEFAULT false,
    resolved_by uuid,
    resolved_at timestamp with time zone,
    resolution_notes text,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.production_kpis (
    id bigserial NOT NULL,
    line_id uuid,
    kpi_date date NOT NULL,
    shift_id uuid,
    oee real,
    availability real,
    performance real,
    quality real,
    total_production integer,
    good_parts integer,
    scrap_parts integer,
    rework_parts integer,
    total_downtime_minutes integer,
    planned_downtime_minutes integer,
    unplanned_downtime_minutes integer,
    changeover_time_minutes integer,
    maintenance_time_minutes integer,
    energy_consumption_kwh real,
    material_waste_percent real,
    first_pass_yield real,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

-- ===========================================================================================
-- Tables created by migration 005 (andon escalation)
-- ===========================================================================================

CREATE TABLE factory_telemetry.andon_escalations (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    event_id uuid NOT NULL,
    priority text NOT NULL,
    acknowledgment_timeout_minutes integer NOT NULL DEFAULT 15,
    resolution_timeout_minutes integer NOT NULL DEFAULT 60,
    escalation_recipients text[] NOT NULL DEFAULT '{}'::text[],
    escalation_level integer NOT NULL DEFAULT 1,
    status text NOT NULL DEFAULT 'active'::text,
    created_at timestamp with time zone DEFAULT now(),
    acknowledged_at timestamp with time zone,
    escalated_at timestamp with time zone,
    cancelled_at timestamp with time zone,
    resolved_at timestamp with time zone,
    escalation_notes text,
    escalated_by uuid,
    acknowledged_by uuid,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.andon_escalation_history (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    escalation_id uuid NOT NULL,
    action text NOT NULL,
    performed_by uuid,
    performed_at timestamp with time zone DEFAULT now(),
    notes text,
    escalation_level integer,
    recipients_notified text[],
    notification_method text,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.andon_escalation_rules (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    priority text NOT NULL,
    escalation_level integer NOT NULL,
    delay_minutes integer NOT NULL DEFAULT 0,
    recipients text[] NOT NULL DEFAULT '{}'::text[],
    notification_methods text[] NOT NULL DEFAULT '{email,websocket}'::text[],
    escalation_message_template text,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.andon_escalation_recipients (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    role text NOT NULL,
    name text NOT NULL,
    email text,
    phone text,
    sms_enabled boolean DEFAULT false,
    email_enabled boolean DEFAULT true,
    websocket_enabled boolean DEFAULT true,
    push_enabled boolean DEFAULT false,
    escalation_levels integer[] DEFAULT '{1,2,3,4}'::integer[],
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (role)
);

-- ===========================================================================================
-- Tables created by migration 006 (report system)
-- ===========================================================================================

CREATE TABLE factory_telemetry.report_templates (
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
    updated_by uuid,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.report_generation_jobs (
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
    progress_percentage integer DEFAULT 0,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.report_access_logs (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    report_id uuid,
    user_id uuid,
    action text NOT NULL,
    accessed_at timestamp with time zone DEFAULT now(),
    ip_address inet,
    user_agent text,
    additional_data jsonb DEFAULT '{}'::jsonb,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.report_favorites (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid,
    template_id uuid,
    name text NOT NULL,
    parameters jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (user_id, template_id, name)
);

CREATE TABLE factory_telemetry.report_schedules (
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
    updated_by uuid,
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.report_schedule_runs (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    schedule_id uuid,
    generation_job_id uuid,
    report_id uuid,
    status text DEFAULT 'pending'::text,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    error_message text,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

CREATE TABLE factory_telemetry.report_categories (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    description text,
    color text,
    icon text,
    sort_order integer DEFAULT 0,
    is_active boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (name)
);

CREATE TABLE factory_telemetry.report_template_categories (
    template_id uuid NOT NULL,
    category_id uuid NOT NULL,
    PRIMARY KEY (template_id, category_id)
);

CREATE TABLE factory_telemetry.report_permissions (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    template_id uuid,
    role text NOT NULL,
    can_generate boolean DEFAULT false,
    can_view boolean DEFAULT false,
    can_edit boolean DEFAULT false,
    can_delete boolean DEFAULT false,
    can_schedule boolean DEFAULT false,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (template_id, role)
);

CREATE TABLE factory_telemetry.report_notifications (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    report_id uuid,
    user_id uuid,
    notification_type text NOT NULL,
    title text NOT NULL,
    message text NOT NULL,
    is_read boolean DEFAULT false,
    sent_at timestamp with time zone DEFAULT now(),
    read_at timestamp with time zone,
    PRIMARY KEY (id)
);

-- ===========================================================================================
-- Tables created by migration 007 (PLC integration)
-- ===========================================================================================

CREATE TABLE factory_telemetry.equipment_line_mapping (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    equipment_code text NOT NULL,
    production_line_id uuid NOT NULL,
    position_in_line integer,
    is_primary boolean DEFAULT false,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (equipment_code, production_line_id)
);

CREATE TABLE factory_telemetry.production_context_history (
    id bigserial NOT NULL,
    equipment_code text NOT NULL,
    context_data jsonb NOT NULL,
    change_reason text,
    changed_by uuid,
    changed_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

-- ===========================================================================================
-- Table created by migration 009 (database optimization)
-- ===========================================================================================

CREATE TABLE factory_telemetry.maintenance_log (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    maintenance_type text NOT NULL,
    started_at timestamp with time zone NOT NULL,
    completed_at timestamp with time zone,
    status text NOT NULL DEFAULT 'running'::text,
    notes text,
    created_at timestamp with time zone DEFAULT now(),
    PRIMARY KEY (id)
);

-- ===========================================================================================
-- Foreign keys (after all tables exist: several references are circular)
-- ===========================================================================================

-- 001
ALTER TABLE factory_telemetry.metric_binding
    ADD FOREIGN KEY (metric_def_id) REFERENCES factory_telemetry.metric_def(id) ON DELETE CASCADE;
ALTER TABLE factory_telemetry.metric_latest
    ADD FOREIGN KEY (metric_def_id) REFERENCES factory_telemetry.metric_def(id) ON DELETE CASCADE;
ALTER TABLE factory_telemetry.metric_hist
    ADD FOREIGN KEY (metric_def_id) REFERENCES factory_telemetry.metric_def(id) ON DELETE CASCADE;
ALTER TABLE factory_telemetry.context
    ADD FOREIGN KEY (current_job_id) REFERENCES factory_telemetry.job_assignments(id),
    ADD FOREIGN KEY (production_schedule_id) REFERENCES factory_telemetry.production_schedules(id),
    ADD FOREIGN KEY (current_product_type_id) REFERENCES factory_telemetry.product_types(id),
    ADD FOREIGN KEY (production_line_id) REFERENCES factory_telemetry.production_lines(id),
    ADD FOREIGN KEY (shift_id) REFERENCES factory_telemetry.production_shifts(id);

-- 002
ALTER TABLE factory_telemetry.equipment_config
    ADD FOREIGN KEY (plc_id) REFERENCES factory_telemetry.plc_config(id),
    ADD FOREIGN KEY (production_line_id) REFERENCES factory_telemetry.production_lines(id);

-- 003
ALTER TABLE factory_telemetry.production_schedules
    ADD FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id),
    ADD FOREIGN KEY (product_type_id) REFERENCES factory_telemetry.product_types(id),
    ADD FOREIGN KEY (created_by) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.job_assignments
    ADD FOREIGN KEY (schedule_id) REFERENCES factory_telemetry.production_schedules(id),
    ADD FOREIGN KEY (user_id) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.checklist_completions
    ADD FOREIGN KEY (job_assignment_id) REFERENCES factory_telemetry.job_assignments(id),
    ADD FOREIGN KEY (template_id) REFERENCES factory_telemetry.checklist_templates(id),
    ADD FOREIGN KEY (completed_by) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.downtime_events
    ADD FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id),
    ADD FOREIGN KEY (reported_by) REFERENCES factory_telemetry.users(id),
    ADD FOREIGN KEY (confirmed_by) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.oee_calculations
    ADD FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id);
ALTER TABLE factory_telemetry.production_reports
    ADD FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id),
    ADD FOREIGN KEY (generated_by) REFERENCES factory_telemetry.users(id),
    ADD FOREIGN KEY (template_id) REFERENCES factory_telemetry.report_templates(id),
    ADD FOREIGN KEY (generation_job_id) REFERENCES factory_telemetry.report_generation_jobs(id);
ALTER TABLE factory_telemetry.andon_events
    ADD FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id),
    ADD FOREIGN KEY (reported_by) REFERENCES factory_telemetry.users(id),
    ADD FOREIGN KEY (acknowledged_by) REFERENCES factory_telemetry.users(id),
    ADD FOREIGN KEY (resolved_by) REFERENCES factory_telemetry.users(id);

-- 004
ALTER TABLE factory_telemetry.shift_assignments
    ADD FOREIGN KEY (user_id) REFERENCES factory_telemetry.users(id),
    ADD FOREIGN KEY (shift_id) REFERENCES factory_telemetry.production_shifts(id),
    ADD FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id);
ALTER TABLE factory_telemetry.production_targets
    ADD FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id),
    ADD FOREIGN KEY (product_type_id) REFERENCES factory_telemetry.product_types(id),
    ADD FOREIGN KEY (shift_id) REFERENCES factory_telemetry.production_shifts(id),
    ADD FOREIGN KEY (created_by) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.quality_checks
    ADD FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id),
    ADD FOREIGN KEY (product_type_id) REFERENCES factory_telemetry.product_types(id),
    ADD FOREIGN KEY (checked_by) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.maintenance_work_orders
    ADD FOREIGN KEY (assigned_to) REFERENCES factory_telemetry.users(id),
    ADD FOREIGN KEY (created_by) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.maintenance_tasks
    ADD FOREIGN KEY (work_order_id) REFERENCES factory_telemetry.maintenance_work_orders(id),
    ADD FOREIGN KEY (completed_by) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.material_consumption
    ADD FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id),
    ADD FOREIGN KEY (shift_id) REFERENCES factory_telemetry.production_shifts(id),
    ADD FOREIGN KEY (recorded_by) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.production_alerts
    ADD FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id),
    ADD FOREIGN KEY (acknowledged_by) REFERENCES factory_telemetry.users(id),
    ADD FOREIGN KEY (resolved_by) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.production_kpis
    ADD FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id),
    ADD FOREIGN KEY (shift_id) REFERENCES factory_telemetry.production_shifts(id);

-- 005
ALTER TABLE factory_telemetry.andon_escalations
    ADD FOREIGN KEY (event_id) REFERENCES factory_telemetry.andon_events(id) ON DELETE CASCADE,
    ADD FOREIGN KEY (escalated_by) REFERENCES factory_telemetry.users(id),
    ADD FOREIGN KEY (acknowledged_by) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.andon_escalation_history
    ADD FOREIGN KEY (escalation_id) REFERENCES factory_telemetry.andon_escalations(id) ON DELETE CASCADE,
    ADD FOREIGN KEY (performed_by) REFERENCES factory_telemetry.users(id);

-- 006
ALTER TABLE factory_telemetry.report_templates
    ADD FOREIGN KEY (created_by) REFERENCES factory_telemetry.users(id),
    ADD FOREIGN KEY (updated_by) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.report_generation_jobs
    ADD FOREIGN KEY (template_id) REFERENCES factory_telemetry.report_templates(id),
    ADD FOREIGN KEY (created_by) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.report_access_logs
    ADD FOREIGN KEY (report_id) REFERENCES factory_telemetry.production_reports(id) ON DELETE CASCADE,
    ADD FOREIGN KEY (user_id) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.report_favorites
    ADD FOREIGN KEY (user_id) REFERENCES factory_telemetry.users(id) ON DELETE CASCADE,
    ADD FOREIGN KEY (template_id) REFERENCES factory_telemetry.report_templates(id) ON DELETE CASCADE;
ALTER TABLE factory_telemetry.report_schedules
    ADD FOREIGN KEY (template_id) REFERENCES factory_telemetry.report_templates(id),
    ADD FOREIGN KEY (created_by) REFERENCES factory_telemetry.users(id),
    ADD FOREIGN KEY (updated_by) REFERENCES factory_telemetry.users(id);
ALTER TABLE factory_telemetry.report_schedule_runs
    ADD FOREIGN KEY (schedule_id) REFERENCES factory_telemetry.report_schedules(id) ON DELETE CASCADE,
    ADD FOREIGN KEY (generation_job_id) REFERENCES factory_telemetry.report_generation_jobs(id),
    ADD FOREIGN KEY (report_id) REFERENCES factory_telemetry.production_reports(id);
ALTER TABLE factory_telemetry.report_template_categories
    ADD FOREIGN KEY (template_id) REFERENCES factory_telemetry.report_templates(id) ON DELETE CASCADE,
    ADD FOREIGN KEY (category_id) REFERENCES factory_telemetry.report_categories(id) ON DELETE CASCADE;
ALTER TABLE factory_telemetry.report_permissions
    ADD FOREIGN KEY (template_id) REFERENCES factory_telemetry.report_templates(id) ON DELETE CASCADE;
ALTER TABLE factory_telemetry.report_notifications
    ADD FOREIGN KEY (report_id) REFERENCES factory_telemetry.production_reports(id) ON DELETE CASCADE,
    ADD FOREIGN KEY (user_id) REFERENCES factory_telemetry.users(id);

-- 007
ALTER TABLE factory_telemetry.equipment_line_mapping
    ADD FOREIGN KEY (equipment_code) REFERENCES factory_telemetry.equipment_config(equipment_code),
    ADD FOREIGN KEY (production_line_id) REFERENCES factory_telemetry.production_lines(id);
ALTER TABLE factory_telemetry.production_context_history
    ADD FOREIGN KEY (changed_by) REFERENCES factory_telemetry.users(id);

-- ===========================================================================================
-- Indexes. Plain b-tree indexes as the migrations created them; the partial indexes whose
-- predicate used now() or CURRENT_DATE failed in production and are absent. The few partial
-- indexes below have immutable predicates and were created by 009.
-- ===========================================================================================

-- 001 telemetry
CREATE INDEX ix_metric_hist_def_ts ON factory_telemetry.metric_hist (metric_def_id, ts DESC);
CREATE INDEX idx_metric_binding_metric_def_id ON factory_telemetry.metric_binding (metric_def_id);
CREATE INDEX idx_fault_event_equipment_ts_on ON factory_telemetry.fault_event (equipment_code, ts_on);

-- 002 configuration and users
CREATE INDEX idx_plc_config_enabled ON factory_telemetry.plc_config (enabled);
CREATE INDEX idx_equipment_config_enabled ON factory_telemetry.equipment_config (enabled);
CREATE INDEX idx_equipment_config_plc_id ON factory_telemetry.equipment_config (plc_id);
CREATE INDEX idx_users_username ON factory_telemetry.users (username);
CREATE INDEX idx_users_email ON factory_telemetry.users (email);

-- 003 production management
CREATE INDEX idx_production_lines_enabled ON factory_telemetry.production_lines (enabled);
CREATE INDEX idx_production_schedules_line_id ON factory_telemetry.production_schedules (line_id);
CREATE INDEX idx_production_schedules_status ON factory_telemetry.production_schedules (status);
CREATE INDEX idx_production_schedules_scheduled_start ON factory_telemetry.production_schedules (scheduled_start);
CREATE INDEX idx_job_assignments_user_id ON factory_telemetry.job_assignments (user_id);
CREATE INDEX idx_job_assignments_status ON factory_telemetry.job_assignments (status);
CREATE INDEX idx_downtime_events_line_id ON factory_telemetry.downtime_events (line_id);
CREATE INDEX idx_downtime_events_start_time ON factory_telemetry.downtime_events (start_time);
CREATE INDEX idx_oee_calculations_line_id ON factory_telemetry.oee_calculations (line_id);
CREATE INDEX idx_oee_calculations_calculation_time ON factory_telemetry.oee_calculations (calculation_time);
CREATE INDEX idx_andon_events_line_id ON factory_telemetry.andon_events (line_id);
CREATE INDEX idx_andon_events_status ON factory_telemetry.andon_events (status);
CREATE INDEX idx_andon_events_priority ON factory_telemetry.andon_events (priority);

-- 004 advanced production
CREATE INDEX idx_shift_assignments_user_id ON factory_telemetry.shift_assignments (user_id);
CREATE INDEX idx_shift_assignments_date ON factory_telemetry.shift_assignments (assigned_date);
CREATE INDEX idx_production_targets_line_date ON factory_telemetry.production_targets (line_id, target_date);
CREATE INDEX idx_quality_checks_line_date ON factory_telemetry.quality_checks (line_id, check_time);
CREATE INDEX idx_quality_checks_result ON factory_telemetry.quality_checks (check_result);
CREATE INDEX idx_maintenance_work_orders_equipment ON factory_telemetry.maintenance_work_orders (equipment_code);
CREATE INDEX idx_maintenance_work_orders_status ON factory_telemetry.maintenance_work_orders (status);
CREATE INDEX idx_maintenance_work_orders_priority ON factory_telemetry.maintenance_work_orders (priority);
CREATE INDEX idx_material_consumption_line_date ON factory_telemetry.material_consumption (line_id, consumption_date);
CREATE INDEX idx_energy_consumption_equipment_time ON factory_telemetry.energy_consumption (equipment_code, consumption_time);
CREATE INDEX idx_production_alerts_line_id ON factory_telemetry.production_alerts (line_id);
CREATE INDEX idx_production_alerts_severity ON factory_telemetry.production_alerts (severity);
CREATE INDEX idx_production_alerts_acknowledged ON factory_telemetry.production_alerts (is_acknowledged);
CREATE INDEX idx_production_kpis_line_date ON factory_telemetry.production_kpis (line_id, kpi_date);

-- 005 andon escalation
CREATE INDEX idx_andon_escalations_event_id ON factory_telemetry.andon_escalations (event_id);
CREATE INDEX idx_andon_escalations_status ON factory_telemetry.andon_escalations (status);
CREATE INDEX idx_andon_escalations_priority ON factory_telemetry.andon_escalations (priority);
CREATE INDEX idx_andon_escalations_created_at ON factory_telemetry.andon_escalations (created_at);
CREATE INDEX idx_andon_escalation_history_escalation_id ON factory_telemetry.andon_escalation_history (escalation_id);
CREATE INDEX idx_andon_escalation_history_performed_at ON factory_telemetry.andon_escalation_history (performed_at);
CREATE INDEX idx_andon_escalation_rules_priority ON factory_telemetry.andon_escalation_rules (priority);
CREATE INDEX idx_andon_escalation_recipients_role ON factory_telemetry.andon_escalation_recipients (role);

-- 006 report system
CREATE INDEX idx_report_templates_type ON factory_telemetry.report_templates (template_type);
CREATE INDEX idx_report_templates_active ON factory_telemetry.report_templates (is_active);
CREATE INDEX idx_report_templates_created_by ON factory_telemetry.report_templates (created_by);
CREATE INDEX idx_report_generation_jobs_status ON factory_telemetry.report_generation_jobs (status);
CREATE INDEX idx_report_generation_jobs_priority ON factory_telemetry.report_generation_jobs (priority DESC);
CREATE INDEX idx_report_generation_jobs_created_at ON factory_telemetry.report_generation_jobs (created_at);
CREATE INDEX idx_report_generation_jobs_template_id ON factory_telemetry.report_generation_jobs (template_id);
CREATE INDEX idx_production_reports_template_id ON factory_telemetry.production_reports (template_id);
CREATE INDEX idx_production_reports_status ON factory_telemetry.production_reports (status);
CREATE INDEX idx_production_reports_generated_at ON factory_telemetry.production_reports (generated_at);
CREATE INDEX idx_production_reports_line_id ON factory_telemetry.production_reports (line_id);
CREATE INDEX idx_report_access_logs_report_id ON factory_telemetry.report_access_logs (report_id);
CREATE INDEX idx_report_access_logs_user_id ON factory_telemetry.report_access_logs (user_id);
CREATE INDEX idx_report_access_logs_accessed_at ON factory_telemetry.report_access_logs (accessed_at);
CREATE INDEX idx_report_favorites_user_id ON factory_telemetry.report_favorites (user_id);
CREATE INDEX idx_report_favorites_template_id ON factory_telemetry.report_favorites (template_id);
CREATE INDEX idx_report_schedules_active ON factory_telemetry.report_schedules (is_active);
CREATE INDEX idx_report_schedules_next_run ON factory_telemetry.report_schedules (next_run_at);
CREATE INDEX idx_report_schedules_template_id ON factory_telemetry.report_schedules (template_id);
CREATE INDEX idx_report_schedule_runs_schedule_id ON factory_telemetry.report_schedule_runs (schedule_id);
CREATE INDEX idx_report_schedule_runs_status ON factory_telemetry.report_schedule_runs (status);
CREATE INDEX idx_report_schedule_runs_created_at ON factory_telemetry.report_schedule_runs (created_at);
CREATE INDEX idx_report_categories_active ON factory_telemetry.report_categories (is_active);
CREATE INDEX idx_report_categories_sort_order ON factory_telemetry.report_categories (sort_order);
CREATE INDEX idx_report_permissions_template_id ON factory_telemetry.report_permissions (template_id);
CREATE INDEX idx_report_permissions_role ON factory_telemetry.report_permissions (role);
CREATE INDEX idx_report_notifications_user_id ON factory_telemetry.report_notifications (user_id);
CREATE INDEX idx_report_notifications_is_read ON factory_telemetry.report_notifications (is_read);
CREATE INDEX idx_report_notifications_sent_at ON factory_telemetry.report_notifications (sent_at);

-- 007 PLC integration
CREATE INDEX idx_equipment_config_production_line ON factory_telemetry.equipment_config (production_line_id);
CREATE INDEX idx_equipment_config_equipment_type ON factory_telemetry.equipment_config (equipment_type);
CREATE INDEX idx_equipment_config_criticality ON factory_telemetry.equipment_config (criticality_level);
CREATE INDEX idx_context_production_line ON factory_telemetry.context (production_line_id);
CREATE INDEX idx_context_current_job ON factory_telemetry.context (current_job_id);
CREATE INDEX idx_context_production_schedule ON factory_telemetry.context (production_schedule_id);
CREATE INDEX idx_context_shift ON factory_telemetry.context (shift_id);
CREATE INDEX idx_equipment_line_mapping_equipment ON factory_telemetry.equipment_line_mapping (equipment_code);
CREATE INDEX idx_equipment_line_mapping_line ON factory_telemetry.equipment_line_mapping (production_line_id);
CREATE INDEX idx_production_context_history_equipment ON factory_telemetry.production_context_history (equipment_code);
CREATE INDEX idx_production_context_history_changed_at ON factory_telemetry.production_context_history (changed_at);

-- 008 fixes
CREATE INDEX idx_users_employee_id ON factory_telemetry.users (employee_id);
CREATE INDEX idx_users_role ON factory_telemetry.users (role);
CREATE INDEX idx_users_department ON factory_telemetry.users (department);
CREATE INDEX idx_users_shift ON factory_telemetry.users (shift);
CREATE INDEX idx_users_is_active ON factory_telemetry.users (is_active);
CREATE INDEX idx_context_product_type ON factory_telemetry.context (current_product_type_id);
CREATE INDEX idx_production_schedules_line_status ON factory_telemetry.production_schedules (line_id, status);
CREATE INDEX idx_job_assignments_user_status ON factory_telemetry.job_assignments (user_id, status);
CREATE INDEX idx_downtime_events_equipment_time ON factory_telemetry.downtime_events (equipment_code, start_time);
CREATE INDEX idx_andon_events_line_status ON factory_telemetry.andon_events (line_id, status);
CREATE INDEX idx_oee_calculations_equipment_time ON factory_telemetry.oee_calculations (equipment_code, calculation_time);

-- 009 performance indexes (only those without now()/CURRENT_DATE in their predicate)
CREATE INDEX idx_production_lines_target_speed ON factory_telemetry.production_lines (target_speed) WHERE enabled = true;
CREATE INDEX idx_production_schedules_status_priority ON factory_telemetry.production_schedules (status, priority)
    WHERE status = ANY (ARRAY['scheduled'::text, 'in_progress'::text]);
CREATE INDEX idx_job_assignments_schedule_status ON factory_telemetry.job_assignments (schedule_id, status);
CREATE INDEX idx_job_assignments_started_at ON factory_telemetry.job_assignments (started_at) WHERE started_at IS NOT NULL;
CREATE INDEX idx_oee_calculations_line_time ON factory_telemetry.oee_calculations (line_id, calculation_time DESC);
CREATE INDEX idx_downtime_events_line_category ON factory_telemetry.downtime_events (line_id, category, start_time DESC);
CREATE INDEX idx_downtime_events_equipment_active ON factory_telemetry.downtime_events (equipment_code, start_time DESC)
    WHERE end_time IS NULL;
CREATE INDEX idx_andon_events_priority_active ON factory_telemetry.andon_events (priority, reported_at DESC)
    WHERE status = ANY (ARRAY['open'::text, 'acknowledged'::text]);
CREATE INDEX idx_quality_checks_line_result ON factory_telemetry.quality_checks (line_id, check_result, check_time DESC);
CREATE INDEX idx_quality_checks_product_result ON factory_telemetry.quality_checks (product_type_id, check_result, check_time DESC);
CREATE INDEX idx_quality_checks_defect_codes ON factory_telemetry.quality_checks USING gin (defect_codes)
    WHERE check_result = 'fail'::text;
CREATE INDEX idx_production_reports_date_line ON factory_telemetry.production_reports (report_date DESC, line_id);
CREATE INDEX idx_equipment_config_line_enabled ON factory_telemetry.equipment_config (production_line_id, enabled)
    WHERE enabled = true;
CREATE INDEX idx_production_lines_active ON factory_telemetry.production_lines (line_code) WHERE enabled = true;
CREATE INDEX idx_maintenance_log_type_date ON factory_telemetry.maintenance_log (maintenance_type, started_at DESC);

-- ===========================================================================================
-- Views in public
-- ===========================================================================================

-- 001
CREATE VIEW public.v_equipment_latest AS
SELECT md.equipment_code,
       md.metric_key,
       ml.ts,
       COALESCE(ml.value_text,
                ml.value_bool::text,
                ml.value_int::text,
                ml.value_real::text,
                ml.value_json::text) AS value,
       ml.value_bool,
       ml.value_int,
       ml.value_real,
       ml.value_json
FROM factory_telemetry.metric_def md
JOIN factory_telemetry.metric_latest ml ON ml.metric_def_id = md.id;

CREATE VIEW public.v_faults_active AS
SELECT fa.equipment_code,
       fa.bit_index,
       fa.ts,
       fa.is_active,
       fc.name,
       fc.description,
       fc.marker
FROM factory_telemetry.fault_active fa
LEFT JOIN factory_telemetry.fault_catalog fc
       ON fc.equipment_code = fa.equipment_code AND fc.bit_index = fa.bit_index
WHERE fa.is_active;

-- 003
CREATE VIEW public.v_production_dashboard AS
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
WHERE pl.enabled
ORDER BY pl.name, ps.scheduled_start;

CREATE VIEW public.v_downtime_summary AS
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

CREATE VIEW public.v_oee_summary AS
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
       END::text AS oee_rating
FROM factory_telemetry.oee_calculations oc
JOIN factory_telemetry.production_lines pl ON pl.id = oc.line_id
ORDER BY oc.calculation_time DESC;

-- 004
CREATE VIEW public.v_production_performance AS
SELECT pl.line_code,
       pl.name AS line_name,
       pk.kpi_date,
       s.name AS shift_name,
       pk.oee,
       pk.availability,
       pk.performance,
       pk.quality,
       pk.total_production,
       pk.good_parts,
       pk.scrap_parts,
       pk.rework_parts,
       pk.total_downtime_minutes,
       pk.unplanned_downtime_minutes,
       pk.energy_consumption_kwh,
       pk.material_waste_percent,
       pk.first_pass_yield
FROM factory_telemetry.production_kpis pk
JOIN factory_telemetry.production_lines pl ON pl.id = pk.line_id
LEFT JOIN factory_telemetry.production_shifts s ON s.id = pk.shift_id
ORDER BY pk.kpi_date DESC, pl.line_code;

CREATE VIEW public.v_maintenance_overview AS
SELECT wo.id,
       wo.work_order_number,
       wo.equipment_code,
       wo.title,
       wo.priority,
       wo.status,
       wo.work_type,
       wo.scheduled_start,
       wo.scheduled_end,
       wo.actual_start,
       wo.actual_end,
       wo.estimated_duration_hours,
       wo.actual_duration_hours,
       ua.username AS assigned_to,
       uc.username AS created_by,
       count(mt.id) AS total_tasks,
       count(mt.id) FILTER (WHERE mt.status = 'completed') AS completed_tasks
FROM factory_telemetry.maintenance_work_orders wo
LEFT JOIN factory_telemetry.users ua ON ua.id = wo.assigned_to
LEFT JOIN factory_telemetry.users uc ON uc.id = wo.created_by
LEFT JOIN factory_telemetry.maintenance_tasks mt ON mt.work_order_id = wo.id
GROUP BY wo.id, ua.username, uc.username
ORDER BY wo.created_at DESC;

-- 005
CREATE VIEW public.v_andon_escalation_statistics AS
SELECT date(ae.created_at) AS date,
       ae.priority,
       count(*) AS total_escalations,
       count(*) FILTER (WHERE ae.status = 'resolved') AS resolved_escalations,
       count(*) FILTER (WHERE ae.status = 'escalated') AS escalated_escalations,
       count(*) FILTER (WHERE ae.status = 'active') AS active_escalations,
       avg(EXTRACT(epoch FROM ae.acknowledged_at - ae.created_at) / 60) AS avg_acknowledgment_time_minutes,
       avg(EXTRACT(epoch FROM ae.resolved_at - ae.created_at) / 60) AS avg_resolution_time_minutes,
       max(ae.escalation_level) AS max_escalation_level_reached
FROM factory_telemetry.andon_escalations ae
GROUP BY date(ae.created_at), ae.priority
ORDER BY date(ae.created_at) DESC, ae.priority;

-- 007
CREATE VIEW public.v_equipment_production_status AS
SELECT ec.id,
       ec.equipment_code,
       ec.name AS equipment_name,
       ec.equipment_type,
       ec.criticality_level,
       ec.target_speed,
       ec.enabled AS equipment_enabled,
       pl.id AS production_line_id,
       pl.line_code,
       pl.name AS line_name,
       pl.target_speed AS line_target_speed,
       c.current_operator,
       c.current_shift,
       c.current_job_id,
       c.production_schedule_id,
       c.target_quantity,
       c.actual_quantity,
       c.production_efficiency,
       c.quality_rate,
       c.changeover_status,
       c.planned_stop,
       c.planned_stop_reason,
       c.last_production_update,
       pt.product_code,
       pt.name AS product_name,
       ps.scheduled_start,
       ps.scheduled_end,
       ps.status AS schedule_status,
       ja.status AS job_status,
       u.username AS assigned_operator
FROM factory_telemetry.equipment_config ec
LEFT JOIN factory_telemetry.production_lines pl ON pl.id = ec.production_line_id
LEFT JOIN factory_telemetry.context c ON c.equipment_code = ec.equipment_code
LEFT JOIN factory_telemetry.product_types pt ON pt.id = c.current_product_type_id
LEFT JOIN factory_telemetry.production_schedules ps ON ps.id = c.production_schedule_id
LEFT JOIN factory_telemetry.job_assignments ja ON ja.id = c.current_job_id
LEFT JOIN factory_telemetry.users u ON u.id = ja.user_id
WHERE ec.enabled
ORDER BY pl.line_code, ec.equipment_code;

CREATE VIEW public.v_production_line_equipment AS
SELECT pl.id AS line_id,
       pl.line_code,
       pl.name AS line_name,
       pl.target_speed AS line_target_speed,
       count(ec.id) AS total_equipment,
       count(ec.id) FILTER (WHERE ec.enabled) AS active_equipment,
       count(ec.id) FILTER (WHERE ec.equipment_type = 'production') AS production_equipment,
       count(ec.id) FILTER (WHERE ec.criticality_level >= 4) AS critical_equipment,
       avg(ec.target_speed) AS avg_equipment_speed,
       string_agg(ec.equipment_code, ', ' ORDER BY elm.position_in_line, ec.equipment_code) AS equipment_codes
FROM factory_telemetry.production_lines pl
LEFT JOIN factory_telemetry.equipment_config ec ON ec.production_line_id = pl.id
LEFT JOIN factory_telemetry.equipment_line_mapping elm
       ON elm.equipment_code = ec.equipment_code AND elm.production_line_id = pl.id
GROUP BY pl.id, pl.line_code, pl.name, pl.target_speed
ORDER BY pl.line_code;

-- 008
CREATE VIEW public.v_production_line_status AS
SELECT pl.id AS line_id,
       pl.line_code,
       pl.name AS line_name,
       pl.target_speed,
       pl.enabled,
       (SELECT count(*) FROM factory_telemetry.equipment_config ec
         WHERE ec.production_line_id = pl.id) AS total_equipment,
       (SELECT count(*) FROM factory_telemetry.equipment_config ec
         WHERE ec.production_line_id = pl.id AND ec.enabled) AS active_equipment,
       (SELECT count(*) FROM factory_telemetry.equipment_config ec
          JOIN factory_telemetry.context c ON c.equipment_code = ec.equipment_code
         WHERE ec.production_line_id = pl.id AND NOT c.planned_stop) AS running_equipment,
       (SELECT count(*) FROM factory_telemetry.equipment_config ec
          JOIN factory_telemetry.context c ON c.equipment_code = ec.equipment_code
         WHERE ec.production_line_id = pl.id AND c.planned_stop) AS stopped_equipment,
       (SELECT count(*) FROM factory_telemetry.production_schedules ps
         WHERE ps.line_id = pl.id AND ps.status = 'in_progress') AS active_schedules,
       (SELECT count(*) FROM factory_telemetry.job_assignments ja
          JOIN factory_telemetry.production_schedules ps ON ps.id = ja.schedule_id
         WHERE ps.line_id = pl.id AND ps.status = 'in_progress'
           AND ja.status IN ('assigned', 'accepted', 'in_progress')) AS active_jobs,
       (SELECT count(*) FROM factory_telemetry.job_assignments ja
          JOIN factory_telemetry.production_schedules ps ON ps.id = ja.schedule_id
         WHERE ps.line_id = pl.id AND ps.status = 'in_progress'
           AND ja.status = 'in_progress') AS running_jobs
FROM factory_telemetry.production_lines pl
WHERE pl.enabled
ORDER BY pl.line_code;

-- ===========================================================================================
-- Views in factory_telemetry (006)
-- ===========================================================================================

CREATE VIEW factory_telemetry.report_generation_status AS
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

CREATE VIEW factory_telemetry.report_statistics AS
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

-- ===========================================================================================
-- Materialized views (009), created WITH DATA
-- ===========================================================================================

CREATE MATERIALIZED VIEW factory_telemetry.mv_production_dashboard AS
SELECT pl.id AS line_id,
       pl.line_code,
       pl.name AS line_name,
       pl.target_speed,
       ps.id AS schedule_id,
       ps.status AS schedule_status,
       ps.priority,
       ps.scheduled_start,
       ps.scheduled_end,
       ps.target_quantity,
       pt.product_code,
       pt.name AS product_name,
       ja.id AS job_id,
       ja.status AS job_status,
       u.username,
       u.first_name,
       u.last_name,
       ja.assigned_at,
       ja.accepted_at,
       ja.started_at,
       ja.completed_at,
       lo.oee AS current_oee,
       lo.availability AS current_availability,
       lo.performance AS current_performance,
       lo.quality AS current_quality
FROM factory_telemetry.production_lines pl
LEFT JOIN factory_telemetry.production_schedules ps
       ON ps.line_id = pl.id AND ps.status IN ('scheduled', 'in_progress')
LEFT JOIN factory_telemetry.product_types pt ON pt.id = ps.product_type_id
LEFT JOIN factory_telemetry.job_assignments ja
       ON ja.schedule_id = ps.id AND ja.status IN ('assigned', 'accepted', 'in_progress')
LEFT JOIN factory_telemetry.users u ON u.id = ja.user_id
LEFT JOIN LATERAL (
    SELECT oc.oee, oc.availability, oc.performance, oc.quality
    FROM factory_telemetry.oee_calculations oc
    WHERE oc.line_id = pl.id
    ORDER BY oc.calculation_time DESC
    LIMIT 1
) lo ON true
WHERE pl.enabled
WITH DATA;

CREATE MATERIALIZED VIEW factory_telemetry.mv_downtime_summary AS
SELECT de.line_id,
       pl.line_code,
       pl.name AS line_name,
       de.equipment_code,
       de.category,
       count(*) AS event_count,
       sum(de.duration_seconds) AS total_duration_seconds,
       avg(de.duration_seconds) AS avg_duration_seconds,
       min(de.start_time) AS first_event,
       max(de.start_time) AS last_event
FROM factory_telemetry.downtime_events de
JOIN factory_telemetry.production_lines pl ON pl.id = de.line_id
GROUP BY de.line_id, pl.line_code, pl.name, de.equipment_code, de.category
WITH DATA;

CREATE MATERIALIZED VIEW factory_telemetry.mv_oee_summary AS
SELECT oc.line_id,
       pl.line_code,
       pl.name AS line_name,
       date(oc.calculation_time) AS calculation_date,
       avg(oc.oee) AS avg_oee,
       avg(oc.availability) AS avg_availability,
       avg(oc.performance) AS avg_performance,
       avg(oc.quality) AS avg_quality,
       count(*) AS calculation_count
FROM factory_telemetry.oee_calculations oc
JOIN factory_telemetry.production_lines pl ON pl.id = oc.line_id
GROUP BY oc.line_id, pl.line_code, pl.name, date(oc.calculation_time)
WITH DATA;

CREATE INDEX idx_mv_production_dashboard_line ON factory_telemetry.mv_production_dashboard (line_id);
CREATE INDEX idx_mv_production_dashboard_status ON factory_telemetry.mv_production_dashboard (schedule_status, job_status);
CREATE INDEX idx_mv_downtime_summary_line ON factory_telemetry.mv_downtime_summary (line_id, category);
CREATE INDEX idx_mv_oee_summary_line_date ON factory_telemetry.mv_oee_summary (line_id, calculation_date DESC);

-- ===========================================================================================
-- Functions
-- ===========================================================================================

-- 005: escalate active andon escalations whose acknowledgment or resolution timeout has passed.
CREATE FUNCTION factory_telemetry.auto_escalate_andon_events()
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    esc record;
    next_level integer;
    rule record;
BEGIN
    FOR esc IN
        SELECT e.id, e.priority, e.escalation_level, e.status
        FROM factory_telemetry.andon_escalations e
        JOIN factory_telemetry.andon_events ev ON ev.id = e.event_id
        WHERE e.status IN ('active', 'acknowledged')
          AND e.resolved_at IS NULL
          AND ((e.acknowledged_at IS NULL
                AND e.created_at < now() - make_interval(mins => e.acknowledgment_timeout_minutes))
               OR (e.acknowledged_at IS NOT NULL
                AND e.created_at < now() - make_interval(mins => e.resolution_timeout_minutes)))
        FOR UPDATE OF e
    LOOP
        next_level := esc.escalation_level + 1;

        SELECT r.recipients, r.notification_methods INTO rule
        FROM factory_telemetry.andon_escalation_rules r
        WHERE r.priority = esc.priority
          AND r.escalation_level = next_level
          AND r.enabled
        ORDER BY r.delay_minutes
        LIMIT 1;

        IF NOT FOUND THEN
            UPDATE factory_telemetry.andon_escalations
               SET status = 'escalated', escalated_at = now(), escalation_level = next_level
             WHERE id = esc.id;
            INSERT INTO factory_telemetry.andon_escalation_history
                (escalation_id, action, performed_at, notes, escalation_level)
            VALUES (esc.id, 'escalated', now(), 'Maximum escalation level reached', next_level);
        ELSE
            UPDATE factory_telemetry.andon_escalations
               SET escalation_level = next_level,
                   escalation_recipients = rule.recipients,
                   escalated_at = now(),
                   status = CASE WHEN esc.status = 'active' THEN 'escalated' ELSE esc.status END
             WHERE id = esc.id;
            INSERT INTO factory_telemetry.andon_escalation_history
                (escalation_id, action, performed_at, notes, escalation_level,
                 recipients_notified, notification_method)
            VALUES (esc.id, 'escalated', now(),
                    'Escalated to level ' || next_level || ' after timeout',
                    next_level, rule.recipients, 'auto');
        END IF;

        UPDATE factory_telemetry.andon_events ev
           SET escalation_level = next_level, escalation_status = 'escalated'
          FROM factory_telemetry.andon_escalations e
         WHERE e.id = esc.id AND ev.id = e.event_id;
    END LOOP;
END;
$$;

-- 005: contact details of the recipients with the given roles.
CREATE FUNCTION factory_telemetry.get_escalation_recipients(recipient_roles text[])
RETURNS TABLE(role text, name text, email text, phone text, sms_enabled boolean,
              email_enabled boolean, websocket_enabled boolean, push_enabled boolean)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
    SELECT r.role, r.name, r.email, r.phone, r.sms_enabled, r.email_enabled,
           r.websocket_enabled, r.push_enabled
    FROM factory_telemetry.andon_escalation_recipients r
    WHERE r.role = ANY (recipient_roles)
      AND r.enabled
    ORDER BY r.role;
END;
$$;

-- 006: keep production_reports.download_count in step with the access log.
CREATE FUNCTION factory_telemetry.update_report_download_count()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.action = 'downloaded' AND NEW.report_id IS NOT NULL THEN
        UPDATE factory_telemetry.production_reports
           SET download_count = COALESCE(download_count, 0) + 1,
               last_downloaded_at = COALESCE(NEW.accessed_at, now())
         WHERE id = NEW.report_id;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER trigger_update_report_download_count
    AFTER INSERT ON factory_telemetry.report_access_logs
    FOR EACH ROW
    EXECUTE FUNCTION factory_telemetry.update_report_download_count();

-- 006: delete old, never downloaded reports and old logs and jobs; returns the number of reports deleted.
CREATE FUNCTION factory_telemetry.cleanup_old_reports()
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    deleted_count integer;
BEGIN
    DELETE FROM factory_telemetry.production_reports pr
     WHERE pr.generated_at < now() - interval '1 year'
       AND COALESCE(pr.download_count, 0) = 0
       AND pr.status = 'completed'
       AND NOT EXISTS (SELECT 1 FROM factory_telemetry.report_schedule_runs r WHERE r.report_id = pr.id);
    GET DIAGNOSTICS deleted_count = ROW_COUNT;

    DELETE FROM factory_telemetry.report_access_logs
     WHERE accessed_at < now() - interval '6 months';

    DELETE FROM factory_telemetry.report_generation_jobs j
     WHERE j.created_at < now() - interval '3 months'
       AND j.status IN ('completed', 'failed', 'cancelled')
       AND NOT EXISTS (SELECT 1 FROM factory_telemetry.production_reports pr WHERE pr.generation_job_id = j.id)
       AND NOT EXISTS (SELECT 1 FROM factory_telemetry.report_schedule_runs r WHERE r.generation_job_id = j.id);

    RETURN deleted_count;
END;
$$;

-- 006: state of the report generation queue over the last 7 days.
CREATE FUNCTION factory_telemetry.get_report_queue_status()
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

-- 007: full production context of one piece of equipment.
CREATE FUNCTION factory_telemetry.get_equipment_production_context(p_equipment_code text)
RETURNS TABLE(equipment_code text, production_line_id uuid, line_code text, line_name text,
              current_job_id uuid, production_schedule_id uuid, target_speed real,
              current_product_type_id uuid, product_code text, product_name text, shift_id uuid,
              shift_name text, target_quantity integer, actual_quantity integer,
              production_efficiency real, quality_rate real, changeover_status text,
              current_operator text, current_shift text, planned_stop boolean,
              planned_stop_reason text, last_production_update timestamp with time zone)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
    SELECT c.equipment_code, c.production_line_id, pl.line_code, pl.name,
           c.current_job_id, c.production_schedule_id, c.target_speed,
           c.current_product_type_id, pt.product_code, pt.name, c.shift_id,
           s.name, c.target_quantity, c.actual_quantity,
           c.production_efficiency, c.quality_rate, c.changeover_status,
           c.current_operator, c.current_shift, c.planned_stop,
           c.planned_stop_reason, c.last_production_update
    FROM factory_telemetry.context c
    LEFT JOIN factory_telemetry.production_lines pl ON pl.id = c.production_line_id
    LEFT JOIN factory_telemetry.product_types pt ON pt.id = c.current_product_type_id
    LEFT JOIN factory_telemetry.production_shifts s ON s.id = c.shift_id
    WHERE c.equipment_code = p_equipment_code;
END;
$$;

-- 007: upsert the full production context of one piece of equipment and record it in the history.
CREATE FUNCTION factory_telemetry.update_equipment_production_context(
    p_equipment_code text,
    p_production_line_id uuid DEFAULT NULL,
    p_current_job_id uuid DEFAULT NULL,
    p_production_schedule_id uuid DEFAULT NULL,
    p_target_speed real DEFAULT NULL,
    p_current_product_type_id uuid DEFAULT NULL,
    p_shift_id uuid DEFAULT NULL,
    p_target_quantity integer DEFAULT NULL,
    p_actual_quantity integer DEFAULT NULL,
    p_production_efficiency real DEFAULT NULL,
    p_quality_rate real DEFAULT NULL,
    p_changeover_status text DEFAULT NULL,
    p_current_operator text DEFAULT NULL,
    p_current_shift text DEFAULT NULL,
    p_planned_stop boolean DEFAULT NULL,
    p_planned_stop_reason text DEFAULT NULL,
    p_change_reason text DEFAULT 'system_update')
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    snapshot jsonb;
BEGIN
    snapshot := jsonb_build_object(
        'equipment_code', p_equipment_code,
        'production_line_id', p_production_line_id,
        'current_job_id', p_current_job_id,
        'production_schedule_id', p_production_schedule_id,
        'target_speed', p_target_speed,
        'current_product_type_id', p_current_product_type_id,
        'shift_id', p_shift_id,
        'target_quantity', p_target_quantity,
        'actual_quantity', p_actual_quantity,
        'production_efficiency', p_production_efficiency,
        'quality_rate', p_quality_rate,
        'changeover_status', p_changeover_status,
        'current_operator', p_current_operator,
        'current_shift', p_current_shift,
        'planned_stop', p_planned_stop,
        'planned_stop_reason', p_planned_stop_reason,
        'updated_at', now());

    INSERT INTO factory_telemetry.context AS c (
        equipment_code, production_line_id, current_job_id, production_schedule_id,
        target_speed, current_product_type_id, shift_id, target_quantity, actual_quantity,
        production_efficiency, quality_rate, changeover_status, current_operator,
        current_shift, planned_stop, planned_stop_reason, last_production_update)
    VALUES (
        p_equipment_code, p_production_line_id, p_current_job_id, p_production_schedule_id,
        p_target_speed, p_current_product_type_id, p_shift_id, COALESCE(p_target_quantity, 0),
        COALESCE(p_actual_quantity, 0), COALESCE(p_production_efficiency, 0),
        COALESCE(p_quality_rate, 0), COALESCE(p_changeover_status, 'none'), p_current_operator,
        p_current_shift, COALESCE(p_planned_stop, false), p_planned_stop_reason, now())
    ON CONFLICT (equipment_code) DO UPDATE SET
        production_line_id = EXCLUDED.production_line_id,
        current_job_id = EXCLUDED.current_job_id,
        production_schedule_id = EXCLUDED.production_schedule_id,
        target_speed = EXCLUDED.target_speed,
        current_product_type_id = EXCLUDED.current_product_type_id,
        shift_id = EXCLUDED.shift_id,
        target_quantity = EXCLUDED.target_quantity,
        actual_quantity = EXCLUDED.actual_quantity,
        production_efficiency = EXCLUDED.production_efficiency,
        quality_rate = EXCLUDED.quality_rate,
        changeover_status = EXCLUDED.changeover_status,
        current_operator = EXCLUDED.current_operator,
        current_shift = EXCLUDED.current_shift,
        planned_stop = EXCLUDED.planned_stop,
        planned_stop_reason = EXCLUDED.planned_stop_reason,
        last_production_update = EXCLUDED.last_production_update,
        updated_at = now();

    INSERT INTO factory_telemetry.production_context_history (equipment_code, context_data, change_reason)
    VALUES (p_equipment_code, snapshot, p_change_reason);
END;
$$;

-- 008: update selected fields of an existing context row; true when the equipment has one.
CREATE FUNCTION factory_telemetry.update_equipment_production_context(
    equipment_code_param text,
    line_id_param uuid DEFAULT NULL,
    current_job_id_param uuid DEFAULT NULL,
    production_schedule_id_param uuid DEFAULT NULL,
    target_speed_param real DEFAULT NULL,
    current_operator_param text DEFAULT NULL,
    current_shift_param text DEFAULT NULL,
    planned_stop_param boolean DEFAULT NULL,
    planned_stop_reason_param text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE factory_telemetry.context c
       SET production_line_id = COALESCE(line_id_param, c.production_line_id),
           current_job_id = COALESCE(current_job_id_param, c.current_job_id),
           production_schedule_id = COALESCE(production_schedule_id_param, c.production_schedule_id),
           target_speed = COALESCE(target_speed_param, c.target_speed),
           current_operator = COALESCE(current_operator_param, c.current_operator),
           current_shift = COALESCE(current_shift_param, c.current_shift),
           planned_stop = COALESCE(planned_stop_param, c.planned_stop),
           planned_stop_reason = COALESCE(planned_stop_reason_param, c.planned_stop_reason),
           updated_at = now()
     WHERE c.equipment_code = equipment_code_param;
    RETURN FOUND;
END;
$$;

-- 009: performance summary of one line over the last p_hours hours.
CREATE FUNCTION factory_telemetry.get_line_performance_summary(p_line_id uuid, p_hours integer DEFAULT 24)
RETURNS TABLE(line_id uuid, avg_oee real, total_production integer, total_downtime_minutes integer,
              availability real, performance real, quality real)
LANGUAGE plpgsql
AS $$
DECLARE
    since timestamp with time zone := now() - make_interval(hours => p_hours);
BEGIN
    RETURN QUERY
    SELECT p_line_id,
           o.avg_oee::real,
           COALESCE(o.parts, 0)::integer,
           COALESCE((SELECT sum(de.duration_seconds) / 60
                       FROM factory_telemetry.downtime_events de
                      WHERE de.line_id = p_line_id AND de.start_time >= since), 0)::integer,
           o.avg_availability::real,
           o.avg_performance::real,
           o.avg_quality::real
    FROM (SELECT avg(oc.oee) AS avg_oee,
                 sum(oc.total_parts) AS parts,
                 avg(oc.availability) AS avg_availability,
                 avg(oc.performance) AS avg_performance,
                 avg(oc.quality) AS avg_quality
            FROM factory_telemetry.oee_calculations oc
           WHERE oc.line_id = p_line_id AND oc.calculation_time >= since) o;
END;
$$;

-- 009: downtime of one piece of equipment over the last p_days days.
CREATE FUNCTION factory_telemetry.get_equipment_downtime_summary(p_equipment_code text, p_days integer DEFAULT 7)
RETURNS TABLE(equipment_code text, total_downtime_minutes integer, planned_downtime_minutes integer,
              unplanned_downtime_minutes integer, avg_downtime_duration_minutes real,
              downtime_events_count integer)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
    SELECT p_equipment_code,
           (COALESCE(sum(de.duration_seconds), 0) / 60)::integer,
           (COALESCE(sum(de.duration_seconds) FILTER (WHERE de.category IN ('planned', 'changeover')), 0) / 60)::integer,
           (COALESCE(sum(de.duration_seconds) FILTER (WHERE de.category NOT IN ('planned', 'changeover')), 0) / 60)::integer,
           (avg(de.duration_seconds) / 60.0)::real,
           count(de.id)::integer
    FROM factory_telemetry.downtime_events de
    WHERE de.equipment_code = p_equipment_code
      AND de.start_time >= now() - make_interval(days => p_days);
END;
$$;

-- 009: scheduled versus actual production time of one line over the last p_days days.
CREATE FUNCTION factory_telemetry.get_production_efficiency_metrics(p_line_id uuid, p_days integer DEFAULT 7)
RETURNS TABLE(line_id uuid, total_scheduled_hours real, actual_production_hours real,
              efficiency_percentage real, target_vs_actual_percentage real)
LANGUAGE plpgsql
AS $$
DECLARE
    since timestamp with time zone := now() - make_interval(days => p_days);
    scheduled_hours double precision;
    planned_s double precision;
    actual_s double precision;
    avg_perf double precision;
BEGIN
    SELECT COALESCE(sum(EXTRACT(epoch FROM (LEAST(ps.scheduled_end, now()) - GREATEST(ps.scheduled_start, since)))) / 3600.0, 0)
      INTO scheduled_hours
      FROM factory_telemetry.production_schedules ps
     WHERE ps.line_id = p_line_id
       AND ps.scheduled_end > since
       AND ps.scheduled_start < now()
       AND ps.status <> 'cancelled';

    SELECT sum(oc.planned_production_time), sum(oc.actual_production_time), avg(oc.performance)
      INTO planned_s, actual_s, avg_perf
      FROM factory_telemetry.oee_calculations oc
     WHERE oc.line_id = p_line_id AND oc.calculation_time >= since;

    RETURN QUERY
    SELECT p_line_id,
           scheduled_hours::real,
           (COALESCE(actual_s, 0) / 3600.0)::real,
           (CASE WHEN COALESCE(planned_s, 0) > 0 THEN actual_s / planned_s * 100 ELSE 0 END)::real,
           (COALESCE(avg_perf, 0) * 100)::real;
END;
$$;

-- 009: refresh the dashboard materialized views (they have no unique index, so not CONCURRENTLY).
CREATE FUNCTION factory_telemetry.refresh_materialized_views()
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    REFRESH MATERIALIZED VIEW factory_telemetry.mv_production_dashboard;
    REFRESH MATERIALIZED VIEW factory_telemetry.mv_downtime_summary;
    REFRESH MATERIALIZED VIEW factory_telemetry.mv_oee_summary;
    RAISE NOTICE 'Materialized views refreshed';
END;
$$;

-- 009: update planner statistics of the production tables.
CREATE FUNCTION factory_telemetry.update_table_statistics()
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    ANALYZE factory_telemetry.production_lines;
    ANALYZE factory_telemetry.production_schedules;
    ANALYZE factory_telemetry.job_assignments;
    ANALYZE factory_telemetry.oee_calculations;
    ANALYZE factory_telemetry.downtime_events;
    ANALYZE factory_telemetry.andon_events;
    ANALYZE factory_telemetry.energy_consumption;
    ANALYZE factory_telemetry.quality_checks;
    ANALYZE factory_telemetry.production_reports;
    ANALYZE factory_telemetry.production_kpis;
    ANALYZE factory_telemetry.equipment_config;
    ANALYZE factory_telemetry.context;
    RAISE NOTICE 'Table statistics updated';
END;
$$;

-- 009: table maintenance. VACUUM cannot run inside a function, so this analyzes the tables and
-- reports those whose dead tuples call for a VACUUM by the operator or autovacuum.
CREATE FUNCTION factory_telemetry.maintain_tables()
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    t record;
BEGIN
    PERFORM factory_telemetry.update_table_statistics();
    FOR t IN
        SELECT s.relname, s.n_live_tup, s.n_dead_tup
        FROM pg_stat_user_tables s
        WHERE s.schemaname = 'factory_telemetry'
          AND s.n_dead_tup > 1000
          AND s.n_dead_tup > s.n_live_tup / 5
        ORDER BY s.n_dead_tup DESC
    LOOP
        RAISE NOTICE 'factory_telemetry.% needs VACUUM (% dead, % live tuples)',
            t.relname, t.n_dead_tup, t.n_live_tup;
    END LOOP;
    RAISE NOTICE 'Table maintenance completed';
END;
$$;

-- 009: connection settings for the dashboard workload. ALTER SYSTEM cannot run inside a
-- function, so this applies the session-level part for the current transaction and reports the rest.
CREATE FUNCTION factory_telemetry.configure_connection_pooling()
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM set_config('work_mem', '16MB', true);
    PERFORM set_config('maintenance_work_mem', '64MB', true);
    RAISE NOTICE 'Recommended server settings: max_connections=200, shared_buffers=256MB, effective_cache_size=1GB, checkpoint_completion_target=0.9, wal_buffers=16MB';
    RAISE NOTICE 'Current max_connections=%, shared_buffers=%',
        current_setting('max_connections'), current_setting('shared_buffers');
END;
$$;

-- 009: daily maintenance: statistics, dashboard views, and a line in the maintenance log.
CREATE FUNCTION factory_telemetry.daily_maintenance()
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    started timestamp with time zone := clock_timestamp();
BEGIN
    PERFORM factory_telemetry.update_table_statistics();
    PERFORM factory_telemetry.refresh_materialized_views();
    INSERT INTO factory_telemetry.maintenance_log (maintenance_type, started_at, completed_at, status, notes)
    VALUES ('daily_maintenance', started, clock_timestamp(), 'completed', 'Daily maintenance completed');
    RAISE NOTICE 'Daily maintenance completed';
END;
$$;

-- ===========================================================================================
-- Application roles (cluster-wide: created only when missing) and their privileges
-- ===========================================================================================

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['ms5_user_production', 'ms5_user_staging'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE 'CREATE ROLE ' || quote_ident(r) || ' NOLOGIN';
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created concurrently by another session
            END;
        END IF;
    END LOOP;
END;
$$;

GRANT USAGE ON SCHEMA factory_telemetry TO ms5_user_production, ms5_user_staging;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA factory_telemetry TO ms5_user_production, ms5_user_staging;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA factory_telemetry TO ms5_user_production, ms5_user_staging;
GRANT SELECT ON
    public.v_andon_escalation_statistics,
    public.v_downtime_summary,
    public.v_equipment_latest,
    public.v_equipment_production_status,
    public.v_faults_active,
    public.v_maintenance_overview,
    public.v_oee_summary,
    public.v_production_dashboard,
    public.v_production_line_equipment,
    public.v_production_line_status,
    public.v_production_performance
TO ms5_user_production, ms5_user_staging;
