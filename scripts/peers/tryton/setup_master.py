"""Master data for Ferry's Tryton tests (run by up.sh once per pristine template, via proteus in-process).

Company in AUD, minimal chart of accounts, fiscal year with sequences, GST 10 % on the "Goods"
accounting category, payment terms "Direct" and "30 days", FREIGHT and DISCOUNT service products,
a "Web sales (B2C)" cash party, customer categories "Trade" and "Wholesale", a "Trade" price list
(10 % off the list price), a carrier "Courier", a few countries, a web.shop "Ferry" on warehouse WH and
an invoice payment method "Web shop" (cash journal, cash account 1.1.1) that web orders booked as
invoices are paid with.
Prints the ids it created.
"""
import datetime as dt
import sys
from decimal import Decimal

from proteus import Model, Wizard
from proteus import config as pconfig

cfg = pconfig.set_trytond(sys.argv[1])   # TRYTOND_CONFIG points at the database path

Company = Model.get('company.company')
if Company.find([]):
    print('master data already present')
    sys.exit(0)

Country = Model.get('country.country')
# the country module ships no data and the full ISO import takes ~100 s: create the few tests use
for code, code3, num, name in [
        ('AU', 'AUS', '036', 'Australia'), ('NZ', 'NZL', '554', 'New Zealand'),
        ('US', 'USA', '840', 'United States'), ('DE', 'DEU', '276', 'Germany'),
        ('GB', 'GBR', '826', 'United Kingdom'), ('FR', 'FRA', '250', 'France'),
        ('NL', 'NLD', '528', 'Netherlands'), ('AT', 'AUT', '040', 'Austria'),
        ('CH', 'CHE', '756', 'Switzerland'), ('CA', 'CAN', '124', 'Canada')]:
    Country(code=code, code3=code3, code_numeric=num, name=name).save()

Party = Model.get('party.party')
User = Model.get('res.user')
Currency = Model.get('currency.currency')
CurrencyRate = Model.get('currency.currency.rate')

aud = Currency(name='Australian Dollar', symbol='A$', code='AUD', rounding=Decimal('0.01'))
aud.save()
CurrencyRate(date=dt.date(2000, 1, 1), rate=Decimal(1), currency=aud).save()

# company: the wizard also sets res.user.company/companies of admin
company_config = Wizard('company.company.config')
company_config.execute('company')
company_party = Party(name='Ferry Test Co')
company_party.save()
company_config.form.party = company_party
company_config.form.currency = aud
company_config.execute('add')
cfg._context = User.get_preferences(True, {})   # now carries the company
company, = Company.find([])

# minimal chart of accounts + default receivable/payable/revenue/expense
ModelData = Model.get('ir.model.data')
AccountTemplate = Model.get('account.account.template')
Account = Model.get('account.account')
create_chart = Wizard('account.create_chart')
create_chart.execute('account')
create_chart.form.account_template = AccountTemplate(
    ModelData.get_id('account.account_template_root_en', cfg.context))
create_chart.form.company = company
create_chart.execute('create_account')


def account(kind):
    acc, = Account.find([('type.%s' % kind, '=', True),
        ('company', '=', company.id), ('closed', '!=', True)], limit=1)
    return acc


revenue, expense = account('revenue'), account('expense')
create_chart.form.account_receivable = account('receivable')
create_chart.form.account_payable = account('payable')
create_chart.form.category_account_revenue = revenue
create_chart.form.category_account_expense = expense
create_chart.execute('create_properties')

# fiscal years (this one and the next, so a test run around New Year still posts), sequences, periods
FiscalYear = Model.get('account.fiscalyear')
SequenceStrict = Model.get('ir.sequence.strict')
SequenceType = Model.get('ir.sequence.type')
move_type, = SequenceType.find([('name', '=', 'Account Move')], limit=1)
inv_type, = SequenceType.find([('name', '=', 'Invoice')], limit=1)
this_year = dt.date.today().year
for year in (this_year, this_year + 1):
    move_seq = SequenceStrict(name=f'Moves {year}', sequence_type=move_type, company=company)
    move_seq.save()
    inv_seq = SequenceStrict(name=f'Invoices {year}', sequence_type=inv_type, company=company)
    inv_seq.save()
    fy = FiscalYear(name=str(year), company=company,
        start_date=dt.date(year, 1, 1), end_date=dt.date(year, 12, 31))
    fy.move_sequence = move_seq
    seq, = fy.invoice_sequences
    seq.out_invoice_sequence = seq.in_invoice_sequence = inv_seq
    seq.out_credit_note_sequence = seq.in_credit_note_sequence = inv_seq
    fy.save()
    fy.click('create_period')

PaymentTerm = Model.get('account.invoice.payment_term')
direct = PaymentTerm(name='Direct')
direct.lines.new(type='remainder')
direct.save()
net30 = PaymentTerm(name='30 days')
line = net30.lines.new(type='remainder')
line.relativedeltas.new(days=30)
net30.save()

# every invoiced product needs an accounting category (revenue account)
Category = Model.get('product.category')
goods = Category(name='Goods', accounting=True)
goods.account_revenue = revenue
goods.account_expense = expense
goods.save()

from trytond.modules.account.tests.tools import create_tax  # noqa: E402
tax = create_tax(Decimal('.10'), company=company)
tax.name = tax.description = 'GST 10%'
tax.save()
goods.customer_taxes.append(tax)
goods.save()

Uom = Model.get('product.uom')
unit, = Uom.find([('name', '=', 'Unit')])
Template = Model.get('product.template')
for code, name in [('FREIGHT', 'Freight'), ('DISCOUNT', 'Discount'), ('COURIER', 'Courier service')]:
    Template(name=name, code=code, type='service', default_uom=unit, sale_uom=unit,
        salable=True, list_price=Decimal('0'), account_category=goods).save()
Product = Model.get('product.product')
courier_product, = Product.find([('code', '=', 'COURIER')])

cash = Party(name='Web sales (B2C)')
cash.customer_payment_term = direct
cash.save()

PartyCategory = Model.get('party.category')
trade = PartyCategory(name='Trade')
trade.save()
PartyCategory(name='Wholesale').save()

PriceList = Model.get('product.price_list')
trade_list = PriceList(name='Trade', price='list_price')
trade_list.lines.new(formula='unit_price * 0.9')
trade_list.save()

Carrier = Model.get('carrier')
courier_party = Party(name='Courier Co')
courier_party.save()
courier = Carrier(party=courier_party, carrier_product=courier_product)
courier.save()

Location = Model.get('stock.location')
wh, = Location.find([('type', '=', 'warehouse'), ('code', '=', 'WH')])
WebShop = Model.get('web.shop')
shop = WebShop(name='Ferry', company=company, currency=aud)
shop.warehouses.append(Location(wh.id))
shop.save()

# the shop's payments on invoices (account.invoice.pay): the cash journal and the chart's cash account
Journal = Model.get('account.journal')
cash_journal, = Journal.find([('type', '=', 'cash')], limit=1)
cash_account, = Account.find([('company', '=', company.id), ('code', '=', '1.1.1')], limit=1)
PaymentMethod = Model.get('account.invoice.payment.method')
web_payment = PaymentMethod(name='Web shop', company=company, journal=cash_journal,
    credit_account=cash_account, debit_account=cash_account)
web_payment.save()

print(f'company={company.id} payment_terms={direct.id},{net30.id} account_category={goods.id} '
    f'gst_tax={tax.id} b2c_party={cash.id} customer_categories={trade.id},+1 '
    f'price_list={trade_list.id} carrier={courier.id} warehouse={wh.id} web_shop={shop.id} '
    f'payment_method={web_payment.id}')
